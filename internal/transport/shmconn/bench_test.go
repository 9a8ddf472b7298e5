//go:build linux

package shmconn

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
)

func init() {
	peers["bsource"] = peerBenchSource
	if v, err := strconv.Atoi(os.Getenv("SHMCONN_BENCH_RING")); err == nil {
		benchRing = v
	}
}

// benchRing is the ring size of the benchmarks: the default of
// ipc.Config, or $SHMCONN_BENCH_RING.
var benchRing = 1 << 20

// BenchmarkShmConnRTT64 measures the round trip of a 64-byte message
// between two processes: Send, the peer's Recv and Send, Recv.
func BenchmarkShmConnRTT64(b *testing.B) {
	l, path := listen(b, opts(benchRing))
	p := ipctest.StartPeer(b, "echo", path, strconv.Itoa(benchRing))
	c := accept(b, l)
	p.Expect(b, "ready", peerTimeout)
	rtt(b, c, 64)
}

// BenchmarkShmConnRTT is BenchmarkShmConnRTT64 for other sizes: 56 bytes
// and its 8-byte record header fill one cache line, 64 bytes take two.
func BenchmarkShmConnRTT(b *testing.B) {
	for _, size := range []int{8, 56, 64, 1024} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l, path := listen(b, opts(benchRing))
			p := ipctest.StartPeer(b, "echo", path, strconv.Itoa(benchRing))
			c := accept(b, l)
			p.Expect(b, "ready", peerTimeout)
			rtt(b, c, size)
		})
	}
}

// BenchmarkShmConnRTT64Goroutines is the same round trip between two
// goroutines of one process.
func BenchmarkShmConnRTT64Goroutines(b *testing.B) {
	srv, cli := pair(b, opts(benchRing))
	go func() {
		var buf []byte
		var err error
		for {
			if buf, err = srv.Recv(bg, buf); err != nil {
				return
			}
			if srv.Send(bg, buf) != nil {
				return
			}
		}
	}()
	rtt(b, cli, 64)
}

// rtt runs b.N round trips of size bytes and reports, besides the mean, the
// median and the 99th percentile of the individual round trips (each timed
// with time.Now, as the floor programs time theirs): on a shared machine the
// mean is dominated by the rare round trips during which a process was
// descheduled.
func rtt(b *testing.B, c *Conn, size int) {
	msg := make([]byte, size)
	buf := make([]byte, size)
	for i := 0; i < 1000; i++ { // warm up: both sides spinning
		c.Send(bg, msg)
		c.Recv(bg, buf)
	}
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := c.Send(bg, msg); err != nil {
			b.Fatal(err)
		}
		var err error
		if buf, err = c.Recv(bg, buf); err != nil || len(buf) != size {
			b.Fatal(err)
		}
		samples[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkShmConnThroughput measures one-way throughput between two
// processes: the peer sends b.N messages, this process receives them into
// one reused buffer.
func BenchmarkShmConnThroughput(b *testing.B) {
	for _, size := range []int{64, 4096, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l, path := listen(b, opts(benchRing))
			p := ipctest.StartPeer(b, "bsource", path, strconv.Itoa(benchRing), strconv.Itoa(b.N), strconv.Itoa(size))
			c := accept(b, l)
			p.Expect(b, "ready", peerTimeout)
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			if err := c.Send(bg, []byte("go")); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				var err error
				if buf, err = c.Recv(bg, buf); err != nil || len(buf) != size {
					b.Fatalf("message %d: %d bytes, %v", i, len(buf), err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mmsg/s")
			c.Close()
		})
	}
}

// BenchmarkShmConnSendRecv is one-way between two goroutines of one
// process; allocs/op covers both Send and Recv.
func BenchmarkShmConnSendRecv(b *testing.B) {
	for _, size := range []int{64, 1 << 20} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			srv, cli := pair(b, opts(benchRing))
			msg := make([]byte, size)
			buf := make([]byte, size)
			done := make(chan error, 1)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for i := 0; i < b.N; i++ {
					if err := cli.Send(bg, msg); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			for i := 0; i < b.N; i++ {
				var err error
				if buf, err = srv.Recv(bg, buf); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mmsg/s")
		})
	}
}

// peerBenchSource dials (args[0], ring args[1]), says "ready", waits for
// one message, sends args[2] messages of args[3] bytes and waits for the
// connection to end.
func peerBenchSource(args []string) int {
	c, err := dialArgs(args)
	if err != nil {
		return ipctest.Fail("dial: %v", err)
	}
	defer c.Close()
	n, _ := strconv.Atoi(args[2])
	size, _ := strconv.Atoi(args[3])
	fmt.Println("ready")
	if _, err := c.Recv(context.Background(), nil); err != nil {
		return ipctest.Fail("recv go: %v", err)
	}
	msg := make([]byte, size)
	for i := 0; i < n; i++ {
		if err := c.Send(context.Background(), msg); err != nil {
			return ipctest.Fail("send %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Recv(ctx, nil); err != io.EOF {
		return ipctest.Fail("at the end: %v", err)
	}
	return 0
}
