package mq

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// A process killed -9 at every step of a write: no acknowledged publish
// is lost, no torn record is delivered, no acked message is delivered
// again, deliveries it held are delivered again, and the queue goes on
// (the next locker repairs), also after every process closed it.
func TestLocalCrashSteps(t *testing.T) {
	type tc struct {
		step, op string
		cfg      StreamConfig
		// redelivered: seq 3 was held by the killed consumer and is
		// delivered again; settled: the killed consumer acked seq 3.
		redelivered, settled bool
		msgs                 int // published before the peer starts; 5 if 0
	}
	cases := []tc{
		{step: "append-torn", op: "publish", cfg: StreamConfig{Sync: SyncNone}},
		{step: "append-written", op: "publish", cfg: StreamConfig{Sync: SyncNone}},
		{step: "rotate", op: "publish", cfg: StreamConfig{SegmentBytes: 200}},
		{step: "fsync", op: "publish", cfg: StreamConfig{Sync: SyncAlways}},
		{step: "gc-unlink", op: "publish", cfg: StreamConfig{SegmentBytes: 200, MaxMsgs: 5}},
		{step: "event-written-d", op: "consume", redelivered: true},
		{step: "ack", op: "consume", redelivered: true},
		{step: "event-written-a", op: "consume", settled: true},
		{step: "compact", op: "consume", msgs: 60},
	}
	for _, c := range cases {
		t.Run(c.step, func(t *testing.T) {
			addr, dir := localAddr(t)
			q := openT(t, addr)
			c.cfg.Name = "s"
			mustStream(t, q, c.cfg)
			cons := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: time.Minute})
			acked := map[uint64]string{}
			if c.msgs == 0 {
				c.msgs = 5
			}
			for i := range c.msgs {
				pa := mustPub(t, q, "s", fmt.Sprint("acked-", i), nil)
				acked[pa.Seq] = fmt.Sprint("acked-", i)
			}
			settled := map[uint64]bool{}
			if c.op == "consume" {
				for range 2 {
					d := mustNext(t, cons, 5*time.Second)
					mustAck(t, d)
					settled[d.Seq] = true
				}
			}
			p := ipctest.StartPeer(t, "park", addr, c.step, c.op, "s", "g")
			for {
				l := p.Line(t, 30*time.Second)
				if l == "parked" {
					break
				}
				var seq uint64
				if _, err := fmt.Sscanf(l, "acked %d", &seq); err != nil {
					t.Fatalf("peer said %q", l)
				}
				settled[seq] = true
			}
			p.Kill()
			<-p.Done()
			pa := mustPub(t, q, "s", "after", nil) // the killed holder's lock is taken over
			acked[pa.Seq] = "after"
			if c.settled {
				settled[3] = true
			}
			verify := func(q *Queue, cons *Consumer, first bool) {
				ms, err := q.Read(tctx(t), "s", 0, 10000)
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				have := map[uint64]string{}
				for _, m := range ms {
					have[m.Seq] = string(m.Data)
					if !strings.HasPrefix(string(m.Data), "acked-") && !strings.HasPrefix(string(m.Data), "unacked-") && string(m.Data) != "after" {
						t.Fatalf("seq %d holds %q", m.Seq, m.Data)
					}
				}
				for seq, data := range acked {
					if c.cfg.MaxMsgs > 0 && seq+uint64(c.cfg.MaxMsgs) <= ms[len(ms)-1].Seq {
						continue // trimmed by the limit, as configured
					}
					if have[seq] != data {
						t.Fatalf("acked publish %d %q lost (have %q)", seq, data, have[seq])
					}
				}
				if !first {
					noNext(t, cons, 200*time.Millisecond)
					return
				}
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					d, err := cons.Next(ctx)
					cancel()
					if err != nil {
						break
					}
					if settled[d.Seq] {
						t.Fatalf("acked seq %d delivered again (attempt %d)", d.Seq, d.Attempt)
					}
					if d.Seq == 3 && c.redelivered && d.Attempt != 2 {
						t.Fatalf("held seq 3 delivered with attempt %d, want 2", d.Attempt)
					}
					mustAck(t, d)
					settled[d.Seq] = true
				}
				for seq := range acked {
					if !settled[seq] && (c.cfg.MaxMsgs == 0 || have[seq] != "") {
						t.Fatalf("acked publish %d never delivered", seq)
					}
				}
			}
			verify(q, cons, true)
			rep, err := Check(tctx(t), dir)
			if err != nil || !rep.OK() {
				t.Fatalf("Check: %+v %v", rep.Problems, err)
			}
			// Every process gone: the state comes back from the files.
			cons.Close()
			q.Close()
			q2 := openT(t, addr)
			c2, err := q2.Consumer(tctx(t), "s", "g")
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			verify(q2, c2, false)
		})
	}
}
