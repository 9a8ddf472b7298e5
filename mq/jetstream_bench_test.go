package mq

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/internal/natsserver"
	"github.com/ipcgo/ipc/internal/natstest"
)

// jsBenchServers are the embedded servers the benchmarks run on: fsync
// of every write (sync_interval: always) and the server's default
// interval (2 minutes).
var jsBenchServers = []struct {
	name string
	cfg  natsserver.Config
}{
	{"always", natsserver.Config{SyncAlways: true}},
	{"interval", natsserver.Config{}},
}

// BenchmarkJetStreamPublish: mq's Publish over the JetStream backend,
// beside nats.go's own js.Publish to the same server (the baseline), one
// publisher, 64 B.
func BenchmarkJetStreamPublish(b *testing.B) {
	for _, srv := range jsBenchServers {
		b.Run(srv.name, func(b *testing.B) {
			s := natstest.Start(b, &srv.cfg)
			q, err := Open(context.Background(), s.URL(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			if _, err := q.CreateStream(ctx, StreamConfig{Name: "B"}); err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 64)
			b.Run("mq", func(b *testing.B) {
				b.SetBytes(64)
				for b.Loop() {
					if _, err := q.Publish(ctx, "B", data, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("nats.go", func(b *testing.B) {
				nc, err := nats.Connect(s.URL())
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				js, _ := jetstream.New(nc)
				b.SetBytes(64)
				for b.Loop() {
					if _, err := js.Publish(ctx, "mq.B.p0.m", data); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkJetStreamConsumeAck: Fetch of up to 64 and Ack of each over
// the JetStream backend, beside nats.go's Fetch and AckSync on a plain
// durable consumer of the same stream (the baseline).
func BenchmarkJetStreamConsumeAck(b *testing.B) {
	for _, srv := range jsBenchServers {
		b.Run(srv.name, func(b *testing.B) {
			s := natstest.Start(b, &srv.cfg)
			ctx := context.Background()
			q, err := Open(ctx, s.URL(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			if _, err := q.CreateStream(ctx, StreamConfig{Name: "B"}); err != nil {
				b.Fatal(err)
			}
			nc, err := nats.Connect(s.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			fill := func(b *testing.B, n int) {
				b.Helper()
				for i := range n {
					if _, err := js.PublishAsync("mq.B.p0.m", make([]byte, 64)); err != nil {
						b.Fatal(err)
					}
					if i%1000 == 999 {
						<-js.PublishAsyncComplete()
					}
				}
				<-js.PublishAsyncComplete()
			}
			b.Run("mq", func(b *testing.B) {
				jsBenchRuns++
				g := fmt.Sprintf("g%d", jsBenchRuns)
				if _, err := q.CreateGroup(ctx, "B", GroupConfig{Name: g, StartSeq: lastSeq(b, q) + 1}); err != nil {
					b.Fatal(err)
				}
				fill(b, b.N)
				c, err := q.Consumer(ctx, "B", g)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				b.ResetTimer()
				for n := 0; n < b.N; {
					ds, err := c.Fetch(ctx, min(64, b.N-n))
					if err != nil {
						b.Fatal(err)
					}
					for _, d := range ds {
						if err := d.Ack(ctx); err != nil {
							b.Fatal(err)
						}
					}
					n += len(ds)
				}
			})
			b.Run("nats.go", func(b *testing.B) {
				st, _ := js.Stream(ctx, "MQ_B")
				jsBenchRuns++
				name := fmt.Sprintf("raw%d", jsBenchRuns)
				cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy,
					DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lastSeq(b, q) + 1})
				if err != nil {
					b.Fatal(err)
				}
				fill(b, b.N)
				b.ResetTimer()
				for n := 0; n < b.N; {
					batch, err := cons.Fetch(min(64, b.N-n), jetstream.FetchMaxWait(5*time.Second))
					if err != nil {
						b.Fatal(err)
					}
					for m := range batch.Messages() {
						if err := m.DoubleAck(ctx); err != nil {
							b.Fatal(err)
						}
						n++
					}
				}
			})
		})
	}
}

// jsBenchRuns names each run's group afresh (a benchmark body runs
// several times, and with -count).
var jsBenchRuns int

func lastSeq(b *testing.B, q *Queue) uint64 {
	si, err := q.StreamInfo(context.Background(), "B")
	if err != nil {
		b.Fatal(err)
	}
	return si.LastSeq
}
