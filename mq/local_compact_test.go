package mq

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A journal is compacted once it is mostly settled history: it stays
// small, and the group's state (acks, attempts, held deliveries,
// counters) is the same before and after, in every handle and after a
// reopen.
func TestLocalJournalCompaction(t *testing.T) {
	old := compactAt
	compactAt = 2048
	t.Cleanup(func() { compactAt = old })
	addr, dir := localAddr(t)
	q := openT(t, addr)
	q2 := openT(t, addr)
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: time.Minute})
	const n = 300
	for i := range n {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	j := filepath.Join(dir, "streams", "s", "g.grp")
	maxSize := int64(0)
	var held *Delivery
	for i := range n {
		d := mustNext(t, c, 5*time.Second)
		if d.Attempt == 1 && i%3 == 0 {
			if err := d.Nak(tctx(t), 0); err != nil { // delivered again at once
				t.Fatal(err)
			}
			d = mustNext(t, c, 5*time.Second)
			if d.Attempt != 2 {
				t.Fatalf("seq %d attempt %d after a nak", d.Seq, d.Attempt)
			}
		}
		if i == n-1 {
			held = d // keep the last one in flight
			break
		}
		mustAck(t, d)
		if st, err := os.Stat(j); err == nil && st.Size() > maxSize {
			maxSize = st.Size()
		}
	}
	if maxSize > 3*compactAt {
		t.Fatalf("journal grew to %d bytes", maxSize)
	}
	want := GroupInfo{Stream: "s", Pending: 0, InFlight: 1, Redelivered: n / 3, AckFloor: n - 1}
	for _, h := range []*Queue{q, q2} {
		gi, err := h.GroupInfo(tctx(t), "s", "g")
		if err != nil || gi.Pending != want.Pending || gi.InFlight != want.InFlight || gi.Redelivered != want.Redelivered || gi.AckFloor != want.AckFloor {
			t.Fatalf("GroupInfo %+v %v, want %+v", gi, err, want)
		}
	}
	mustAck(t, held)
	c.Close()
	q.Close()
	q2.Close()
	q3 := openT(t, addr)
	gi, err := q3.GroupInfo(tctx(t), "s", "g")
	if err != nil || gi.AckFloor != n || gi.Redelivered != n/3 || gi.Pending != 0 {
		t.Fatalf("after reopen: %+v %v", gi, err)
	}
	c3, err := q3.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	noNext(t, c3, 100*time.Millisecond)
}
