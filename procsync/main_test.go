package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func TestMain(m *testing.M) {
	ipctest.Main(m, peers)
}

// peers are the bodies of the processes the tests start.
var peers = ipctest.Peers{
	"mutex-hold": peerMutexHold,
}

// peerMutexHold locks mutex args[1] of segment args[0], says "locked" and
// waits to be killed.
func peerMutexHold(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	m, err := procsync.NewMutex(seg, args[1], nil)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	if err := m.Lock(context.Background()); err != nil && !errors.Is(err, procsync.ErrOwnerDead) {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	return 0
}

func TestMutexOwnerDeadSmoke(t *testing.T) {
	seg := ipctest.CreateSegment(t, 4096, nil)
	m, err := procsync.NewMutex(seg, "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := ipctest.StartPeer(t, "mutex-hold", seg.Name(), "m")
	p.Expect(t, "locked", 10*time.Second)
	if err := m.TryLock(); !errors.Is(err, procsync.ErrWouldBlock) {
		t.Fatalf("TryLock on a held mutex: %v", err)
	}
	st := m.State()
	if !st.Locked || st.Owner == nil || st.Owner.PID != p.Pid() || !st.Owner.Alive {
		t.Fatalf("state %+v, want held by live %d", st, p.Pid())
	}
	p.Kill()
	start := time.Now()
	err = m.Lock(context.Background())
	t.Logf("took over after %v", time.Since(start))
	if !errors.Is(err, procsync.ErrOwnerDead) {
		t.Fatalf("Lock after owner death: %v", err)
	}
	if err := m.MarkConsistent(); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = strconv.Itoa
	_ = os.Getpid
	m.Unlock()
}
