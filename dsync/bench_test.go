package dsync

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/natstest"
)

func init() { peers["handoff"] = peerHandoff }

var benchSeq atomic.Int64

// BenchmarkDsync measures, on one embedded server and on a three-node
// loopback cluster (replicas 3): the raw JetStream KV update round trip
// (the baseline), an uncontended Lock+Unlock, and the hand-off of a lock
// between two processes that take turns (every acquisition is a hand-off:
// a holder that unlocked waits until the other has taken the lock before
// it asks again; it publishes its token after its Unlock, so that the
// message is off the hand-off's path). ns/handoff is the time per
// hand-off: Unlock's delete reaching the server, the waiter's watch
// notification, and its create's round trip.
//
//	go test -run '^$' -bench Dsync -count 3 ./dsync/
func BenchmarkDsync(b *testing.B) {
	for _, topo := range []string{"server", "cluster"} {
		b.Run(topo, func(b *testing.B) {
			var url string
			replicas := 1
			if topo == "server" {
				url = natstest.Start(b, nil).URL()
			} else {
				url = natstest.StartCluster(b, 3).URL()
				replicas = 3
			}
			cfg := &Config{Namespace: "bench", TTL: 10 * time.Second, Replicas: replicas, RequestTimeout: 10 * time.Second}
			c := open(b, url, cfg)
			ctx := context.Background()
			b.Run("kv-update", func(b *testing.B) {
				key := "raw." + strconv.FormatInt(benchSeq.Add(1), 10)
				rev, err := c.kv.Create(ctx, key, make([]byte, 64))
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if rev, err = c.kv.Update(ctx, key, make([]byte, 64), rev); err != nil {
						b.Fatal(err)
					}
				}
			})
			// The same round trip after the idle gap a hand-off has (below):
			// on an idle machine the processes sleep between requests and
			// each request pays for waking them.
			b.Run("kv-update-idle", func(b *testing.B) {
				key := "raw." + strconv.FormatInt(benchSeq.Add(1), 10)
				rev, err := c.kv.Create(ctx, key, make([]byte, 64))
				if err != nil {
					b.Fatal(err)
				}
				lat := make([]float64, 0, b.N)
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					time.Sleep(handoffHold)
					b.StartTimer()
					t0 := time.Now()
					if rev, err = c.kv.Update(ctx, key, make([]byte, 64), rev); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, float64(time.Since(t0).Nanoseconds()))
				}
				reportLatency(b, lat, "ns/update")
			})
			b.Run("lock-unlock", func(b *testing.B) {
				m := mustMutex(b, c, "u"+strconv.FormatInt(benchSeq.Add(1), 10))
				b.ResetTimer()
				for range b.N {
					if _, err := m.Lock(ctx); err != nil {
						b.Fatal(err)
					}
					if err := m.Unlock(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			// Hand-off latency: the peers take turns and hold the lock 5 ms,
			// so that the other is already waiting; the time from just before
			// Unlock to the waiter's Lock returning, clocks of one machine.
			b.Run("handoff-latency", func(b *testing.B) {
				reportLatency(b, runHandoff(b, c, url, "turns", handoffHold), "ns/handoff")
			})
			// Contended: both peers lock and unlock as fast as they can;
			// hand-offs are the acquisitions by the other process.
			b.Run("contended-2procs", func(b *testing.B) {
				toks := runHandoff(b, c, url, "free", 0)
				el := b.Elapsed()
				b.ReportMetric(float64(len(toks))/el.Seconds(), "acquisitions/s")
				b.ReportMetric(toks[0]/el.Seconds(), "handoffs/s")
			})
		})
	}
}

// handoffHold is how long a peer holds the lock in the latency benchmark.
const handoffHold = 5 * time.Millisecond

// reportLatency reports the mean, median and 99th percentile of lat.
func reportLatency(b *testing.B, lat []float64, unit string) {
	slices.Sort(lat)
	var sum float64
	for _, v := range lat {
		sum += v
	}
	b.ReportMetric(sum/float64(len(lat)), unit)
	b.ReportMetric(lat[len(lat)/2], "p50-"+unit)
	b.ReportMetric(lat[len(lat)*99/100], "p99-"+unit)
}

// runHandoff runs two handoff peers of the given mode for b.N acquisitions
// in all and returns what they report: the hand-off latencies (turns), or
// the number of hand-offs followed by one entry per acquisition (free).
func runHandoff(b *testing.B, c *Client, url, mode string, hold time.Duration) []float64 {
	ctx := context.Background()
	name := "h" + strconv.FormatInt(benchSeq.Add(1), 10)
	each := strconv.Itoa(max((b.N+1)/2, 2))
	ps := []*ipctest.Peer{
		ipctest.StartPeer(b, "handoff", url, "bench", name, each, "0", mode, hold.String()),
		ipctest.StartPeer(b, "handoff", url, "bench", name, each, "1", mode, hold.String()),
	}
	for _, p := range ps {
		p.Expect(b, "ready", 60*time.Second)
	}
	b.ResetTimer()
	if _, err := c.kv.Put(ctx, "go."+name, nil); err != nil {
		b.Fatal(err)
	}
	var lines [2][]string
	for i, p := range ps {
		lines[i] = strings.Fields(p.Line(b, 5*time.Minute))
		if len(lines[i]) == 0 || lines[i][0] != "done" {
			b.Fatalf("peer said %q", lines[i])
		}
	}
	b.StopTimer()
	if mode == "turns" {
		var lat []float64
		for _, l := range lines {
			for _, f := range l[1:] {
				v, _ := strconv.ParseFloat(f, 64)
				lat = append(lat, v)
			}
		}
		if len(lat) == 0 {
			b.Fatal("no hand-off measured")
		}
		return lat
	}
	// free: each peer lists the tokens it acquired; a hand-off is a token
	// whose predecessor belongs to the other peer.
	owner := map[uint64]int{}
	var all []uint64
	for i, l := range lines {
		for _, f := range l[1:] {
			v, _ := strconv.ParseUint(f, 10, 64)
			owner[v] = i
			all = append(all, v)
		}
	}
	slices.Sort(all)
	out := make([]float64, len(all)+1)
	for k := 1; k < len(all); k++ {
		if owner[all[k]] != owner[all[k-1]] {
			out[0]++
		}
	}
	return out[:len(all)]
}

// peerHandoff takes lock args[2] of namespace args[1] on args[0], args[3]
// times, with another peer (args[4] is this peer's index, 0 or 1) in mode
// args[5]:
//
//   - "turns": the peers take turns, each holding the lock args[6]. A peer
//     publishes (core NATS, without waiting) "acq TOKEN" once it holds the
//     lock and "rel TOKEN NANOS" after Unlock, NANOS being the wall clock
//     just before the Unlock; after its Unlock it waits for the other's
//     "acq" with a larger token before it calls Lock again, so that every
//     acquisition is a hand-off. It reports, for each acquisition, the
//     time since the other's preceding release.
//   - "free": lock and unlock in a loop; it reports its tokens.
//
// It starts when the key "go.NAME" is written, and ends saying "done" and
// the figures.
func peerHandoff(args []string) int {
	url, ns, name := args[0], args[1], args[2]
	count, _ := strconv.Atoi(args[3])
	me, mode := args[4], args[5]
	hold, _ := time.ParseDuration(args[6])
	other := map[string]string{"0": "1", "1": "0"}[me]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Open(ctx, url, &Config{Namespace: ns, TTL: 10 * time.Second, RequestTimeout: 10 * time.Second})
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer c.Close()
	m, err := c.Mutex(name)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	msgs := make(chan *nats.Msg, 4096)
	sub, err := c.nc.ChanSubscribe("bench."+name+"."+other, msgs)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	g, err := c.kv.Watch(ctx, "go."+name)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer func() { _ = g.Stop() }()
	if err := c.nc.Flush(); err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Println("ready")
	for e := range g.Updates() {
		if e != nil {
			break
		}
	}
	mine := "bench." + name + "." + me
	var out []string
	lastAcq := uint64(0)       // the other's latest acquisition
	rels := map[uint64]int64{} // the other's releases: token -> wall clock ns
	recv := func() (string, uint64, int64, error) {
		select {
		case msg := <-msgs:
			f := strings.Fields(string(msg.Data))
			tok, _ := strconv.ParseUint(f[1], 10, 64)
			var ns int64
			if len(f) > 2 {
				ns, _ = strconv.ParseInt(f[2], 10, 64)
			}
			return f[0], tok, ns, nil
		case <-ctx.Done():
			return "", 0, 0, ctx.Err()
		}
	}
	note := func(kind string, tok uint64, ns int64) {
		if kind == "acq" {
			lastAcq = max(lastAcq, tok)
		} else {
			rels[tok] = ns
		}
	}
	for i := range count {
		l, err := m.Lock(ctx)
		if err != nil {
			return ipctest.Fail("lock %d: %v", i, err)
		}
		got := time.Now().UnixNano()
		if mode == "turns" {
			_ = c.nc.Publish(mine, fmt.Appendf(nil, "acq %d", l.Token()))
			// The release that handed the lock over: the other's latest
			// acquisition, if it came before ours.
			if prev := lastAcq; prev != 0 && prev < l.Token() {
				for {
					if ns, ok := rels[prev]; ok {
						out = append(out, strconv.FormatInt(got-ns, 10))
						break
					}
					kind, tok, ns, err := recv()
					if err != nil {
						return ipctest.Fail("no release message: %v", err)
					}
					note(kind, tok, ns)
				}
			}
			time.Sleep(hold)
		} else {
			out = append(out, strconv.FormatUint(l.Token(), 10))
		}
		released := time.Now().UnixNano()
		if err := m.Unlock(ctx); err != nil {
			return ipctest.Fail("unlock %d: %v", i, err)
		}
		if mode != "turns" {
			continue
		}
		_ = c.nc.Publish(mine, fmt.Appendf(nil, "rel %d %d", l.Token(), released))
		for i < count-1 && lastAcq < l.Token() {
			kind, tok, ns, err := recv()
			if err != nil {
				return ipctest.Fail("no turn of the other peer: %v", err)
			}
			note(kind, tok, ns)
		}
	}
	fmt.Println("done " + strings.Join(out, " "))
	return 0
}
