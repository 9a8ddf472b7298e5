package shm_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/shm"
)

// BenchmarkRingPingPong measures the round trip of a 64-byte record
// between two processes over two rings (one each way), spinning waiters,
// with the ring API alone: Reserve, copy, Commit; WaitReadable, Peek,
// copy, Release.
func BenchmarkRingPingPong(b *testing.B) {
	const capacity = 1 << 20
	seg, err := shm.CreateAnonymous(2*(shm.RingSize(capacity)+shm.Align), &shm.Config{Perm: 0o600, Slots: 4, Objects: 4})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	out, err := seg.AllocRing("a", capacity)
	if err != nil {
		b.Fatal(err)
	}
	in, err := seg.AllocRing("b", capacity)
	if err != nil {
		b.Fatal(err)
	}
	spin := 50 * time.Microsecond
	cmd := ipctest.Command("ring-pingpong", spin.String())
	cmd.ExtraFiles = []*os.File{seg.File()}
	p := ipctest.Start(b, cmd)
	p.Expect(b, "ready", peerTimeout)
	o := &shm.WaitOptions{Spin: spin}
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	ctx := context.Background()
	rt := func() {
		w, err := out.Reserve(len(msg))
		if err != nil {
			b.Fatal(err)
		}
		copy(w, msg)
		out.Commit(len(msg))
		for {
			r, err := in.Peek()
			if err == shm.ErrRingEmpty {
				if err := in.WaitReadable(ctx, o); err != nil {
					b.Fatal(err)
				}
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			copy(buf, r)
			in.Release()
			return
		}
	}
	for i := 0; i < 1000; i++ {
		rt()
	}
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rt()
		samples[i] = time.Since(t0)
	}
	b.StopTimer()
	out.CloseWrite()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
	if err := p.Wait(b, peerTimeout); err != nil {
		b.Fatalf("peer: %v", err)
	}
}

// BenchmarkRingThroughput moves records of one size from a producer
// goroutine to a consumer goroutine through one ring.
func BenchmarkRingThroughput(b *testing.B) {
	for _, size := range []int{64, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			capacity := 4 << 20
			_, r, _ := newRing(b, capacity)
			o := &shm.WaitOptions{Spin: 50 * time.Microsecond}
			ctx := context.Background()
			msg := make([]byte, size)
			done := make(chan struct{})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				defer close(done)
				for i := 0; i < b.N; i++ {
					p, err := r.Reserve(size)
					for err == shm.ErrRingFull {
						if err = r.WaitWritable(ctx, o); err == nil {
							p, err = r.Reserve(size)
						}
					}
					if err != nil {
						panic(err)
					}
					copy(p, msg)
					r.Commit(size)
				}
			}()
			buf := make([]byte, size)
			for i := 0; i < b.N; {
				p, err := r.Peek()
				if err == shm.ErrRingEmpty {
					if err := r.WaitReadable(ctx, o); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				copy(buf, p)
				r.Release()
				i++
			}
			<-done
		})
	}
}
