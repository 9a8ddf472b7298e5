package mq

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
)

func localAddr(t *testing.T) (string, string) {
	dir := t.TempDir()
	return fileURL(dir), dir
}

// fileURL is the address of the local queue at dir (escaped: a directory
// name may hold '#' or '?').
func fileURL(dir string) string { return (&url.URL{Scheme: "file", Path: dir}).String() }

func openT(t *testing.T, addr string) *Queue {
	t.Helper()
	q, err := Open(tctx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// waitGroup waits until cond holds for the group's info.
func waitGroup(t *testing.T, q *Queue, stream, group string, what string, cond func(GroupInfo) bool) GroupInfo {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		gi, err := q.GroupInfo(tctx(t), stream, group)
		if err == nil && cond(gi) {
			return gi
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: group info %+v %v", what, gi, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readAcked(t *testing.T, files ...string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, f := range files {
		fh, err := os.Open(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if _, data, ok := strings.Cut(sc.Text(), " "); ok {
				got[data]++
			}
		}
		fh.Close()
	}
	return got
}

// Producers and consumers in separate processes: every acked publish is
// delivered and acked exactly once.
func TestLocalMultiProcess(t *testing.T) {
	addr, dir := localAddr(t)
	q := openT(t, addr)
	for _, sync := range []SyncPolicy{SyncNone, SyncAlways} {
		t.Run(sync.String(), func(t *testing.T) {
			stream := "s" + sync.String()
			mustStream(t, q, StreamConfig{Name: stream, Sync: sync, SegmentBytes: 4096})
			if _, err := q.CreateGroup(tctx(t), stream, GroupConfig{Name: "g"}); err != nil {
				t.Fatal(err)
			}
			const producers, per = 3, 150
			var files []string
			var cons []*ipctest.Peer
			for i := range 2 {
				f := filepath.Join(dir, fmt.Sprintf("acked-%s-%d", stream, i))
				files = append(files, f)
				p := ipctest.StartPeer(t, "consumer", addr, stream, "g", f)
				p.Expect(t, "ready", 30*time.Second)
				cons = append(cons, p)
			}
			var prods []*ipctest.Peer
			for i := range producers {
				prods = append(prods, ipctest.StartPeer(t, "producer", addr, stream, fmt.Sprint(per), fmt.Sprintf("p%d", i)))
			}
			for _, p := range prods {
				p.Expect(t, "done", 60*time.Second)
				if err := p.Wait(t, 30*time.Second); err != nil {
					t.Fatalf("producer: %v", err)
				}
			}
			waitGroup(t, q, stream, "g", "all acked", func(gi GroupInfo) bool { return gi.AckFloor == producers*per })
			for _, p := range cons {
				p.Kill()
				<-p.Done()
			}
			got := readAcked(t, files...)
			for i := range producers {
				for j := range per {
					id := fmt.Sprintf("p%d-%d", i, j)
					if got[id] != 1 {
						t.Fatalf("%s acked %d times, want once", id, got[id])
					}
				}
			}
			if len(got) != producers*per {
				t.Fatalf("%d distinct messages acked, want %d", len(got), producers*per)
			}
			si, _ := q.StreamInfo(tctx(t), stream)
			if si.Msgs != producers*per || si.LastSeq != producers*per {
				t.Fatalf("stream %+v", si)
			}
		})
	}
}

// Deliveries held by a process that dies are delivered again at once,
// not after AckWait.
func TestLocalDeadConsumerRedelivered(t *testing.T) {
	addr, _ := localAddr(t)
	q := openT(t, addr)
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: time.Minute})
	for i := range 3 {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	p := ipctest.StartPeer(t, "holder", addr, "s", "g", "3")
	if l := p.Line(t, 30*time.Second); l != "held 1,2,3" {
		t.Fatalf("holder: %q", l)
	}
	noNext(t, c, 50*time.Millisecond) // held, and the holder lives
	p.Kill()
	<-p.Done()
	start := time.Now()
	seen := map[uint64]bool{}
	for len(seen) < 3 {
		d := mustNext(t, c, 10*time.Second)
		if d.Attempt != 2 {
			t.Fatalf("seq %d attempt %d, want 2", d.Seq, d.Attempt)
		}
		seen[d.Seq] = true
		mustAck(t, d)
	}
	el := time.Since(start)
	t.Logf("held deliveries of a killed process redelivered %v after its death was reaped", el)
	if el > 5*time.Second {
		t.Fatalf("redelivery took %v", el)
	}
}
