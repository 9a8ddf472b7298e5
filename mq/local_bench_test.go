package mq

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkPublish publishes 64-byte messages to a local stream from 1 and
// 4 goroutines under SyncNone and SyncAlways. The baselines, in the same
// run: a raw write(2) of a record of the same size to a file, and a raw
// write + fsync.
func BenchmarkPublish(b *testing.B) {
	data := make([]byte, 64)
	for _, sync := range []SyncPolicy{SyncNone, SyncAlways} {
		for _, par := range []int{1, 4} {
			b.Run(fmt.Sprintf("sync=%s/goroutines=%d", sync, par), func(b *testing.B) {
				dir := b.TempDir()
				ctx := context.Background()
				q, err := Open(ctx, fileURL(dir), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				if _, err := q.CreateStream(ctx, StreamConfig{Name: "s", Sync: sync}); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
				b.ResetTimer()
				var wg gsync
				for g := range par {
					n := b.N / par
					if g == 0 {
						n += b.N % par
					}
					wg.Go(func() {
						for range n {
							if _, err := q.Publish(ctx, "s", data, nil); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("raw-write/fsync=%v", fsync), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			rec, _ := AppendRecord(nil, make([]byte, 64+38))
			b.SetBytes(64)
			for b.Loop() {
				if _, err := f.Write(rec); err != nil {
					b.Fatal(err)
				}
				if fsync {
					f.Sync()
				}
			}
		})
	}
}

type gsync = sync.WaitGroup

// BenchmarkPublishDeliver measures publish→deliver latency with an idle
// consumer waiting (SyncNone): one message in flight at a time; p50 and
// p99 are reported as metrics.
func BenchmarkPublishDeliver(b *testing.B) {
	ctx := context.Background()
	q, err := Open(ctx, fileURL(b.TempDir()), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	if _, err := q.CreateStream(ctx, StreamConfig{Name: "s", Sync: SyncNone}); err != nil {
		b.Fatal(err)
	}
	if _, err := q.CreateGroup(ctx, "s", GroupConfig{Name: "g"}); err != nil {
		b.Fatal(err)
	}
	c, err := q.Consumer(ctx, "s", "g")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	got := make(chan time.Time)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			d, err := c.Next(cctx)
			if err != nil {
				return
			}
			got <- time.Now()
			d.Ack(cctx)
		}
	}()
	data := make([]byte, 64)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		time.Sleep(50 * time.Microsecond) // let the consumer go back to waiting
		t0 := time.Now()
		if _, err := q.Publish(ctx, "s", data, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(t0))
	}
	cancel()
	<-done
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}
