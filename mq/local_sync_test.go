package mq

import (
	"fmt"
	"testing"
	"time"
)

// SyncEvery: publishes return before the fsync; the timer's sync runs,
// and Close with one pending syncs and leaks nothing.
func TestLocalSyncEvery(t *testing.T) {
	addr, _ := localAddr(t)
	q, err := Open(tctx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustStream(t, q, StreamConfig{Name: "s", Sync: SyncEvery(20 * time.Millisecond)})
	for i := range 10 {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	time.Sleep(60 * time.Millisecond) // the timer fires
	mustPub(t, q, "s", "last", nil)   // and is armed again: Close finds it pending
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openT(t, addr)
	si, err := q2.StreamInfo(tctx(t), "s")
	if err != nil || si.Msgs != 11 || si.Config.Sync.Interval() != 20*time.Millisecond {
		t.Fatalf("%+v %v", si, err)
	}
}
