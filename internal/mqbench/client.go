package mqbench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/mq"
)

// The systems a run can measure.
const (
	Local     = "local"     // package mq, local backend (file://)
	JetStream = "jetstream" // NATS JetStream through nats.go, the baseline
	MQNATS    = "mq-nats"   // package mq, JetStream backend (nats://)
)

// Systems are the systems measured by default.
var Systems = []string{Local, JetStream}

// streamName is the stream every measurement uses; the JetStream stream
// takes the subject of the same name.
const streamName = "bench"

// fetchBatch is the most deliveries a consumer takes at once.
const fetchBatch = 64

// client is one process's connection to the store under test.
type client interface {
	publish(ctx context.Context, data []byte) error
	consumer(ctx context.Context, group string) (taker, error)
	close()
}

// taker takes deliveries of one group.
type taker interface {
	// take waits until ctx ends for at least one delivery, calls each with
	// the data of up to max deliveries and acks each; it returns how many.
	take(ctx context.Context, max int, each func(data []byte)) (int, error)
	// flush waits until the acks sent have reached the store.
	flush(ctx context.Context) error
	close()
}

// connect opens a client of system sys on addr.
func connect(ctx context.Context, sys, addr string) (client, error) {
	if sys == JetStream {
		nc, err := nats.Connect(addr, nats.Timeout(10*time.Second))
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		return &jsClient{nc: nc, js: js}, nil
	}
	q, err := mq.Open(ctx, addr, nil)
	if err != nil {
		return nil, err
	}
	return &mqClient{q: q}, nil
}

// createStream creates the stream of a measurement with the policy sync.
func createStream(ctx context.Context, sys, addr string, sync mq.SyncPolicy) error {
	if sys == JetStream {
		c, err := connect(ctx, sys, addr)
		if err != nil {
			return err
		}
		defer c.close()
		_, err = c.(*jsClient).js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName, Subjects: []string{streamName},
			Storage: jetstream.FileStorage, Replicas: 1})
		return err
	}
	q, err := mq.Open(ctx, addr, nil)
	if err != nil {
		return err
	}
	defer q.Close()
	_, err = q.CreateStream(ctx, mq.StreamConfig{Name: streamName, Sync: sync})
	return err
}

// createGroup creates a group that delivers the stream from its start.
func createGroup(ctx context.Context, sys, addr, group string) error {
	if sys == JetStream {
		c, err := connect(ctx, sys, addr)
		if err != nil {
			return err
		}
		defer c.close()
		_, err = c.(*jsClient).js.CreateOrUpdateConsumer(ctx, streamName, jetstream.ConsumerConfig{Durable: group,
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait: 30 * time.Second, MaxAckPending: 20000})
		return err
	}
	q, err := mq.Open(ctx, addr, nil)
	if err != nil {
		return err
	}
	defer q.Close()
	_, err = q.CreateGroup(ctx, streamName, mq.GroupConfig{Name: group, AckWait: 30 * time.Second})
	return err
}

// mqClient is package mq, either backend.
type mqClient struct{ q *mq.Queue }

func (c *mqClient) publish(ctx context.Context, data []byte) error {
	_, err := c.q.Publish(ctx, streamName, data, nil)
	return err
}

func (c *mqClient) consumer(ctx context.Context, group string) (taker, error) {
	con, err := c.q.Consumer(ctx, streamName, group)
	if err != nil {
		return nil, err
	}
	return mqTaker{con}, nil
}

func (c *mqClient) close() { c.q.Close() }

type mqTaker struct{ c *mq.Consumer }

func (t mqTaker) take(ctx context.Context, max int, each func([]byte)) (int, error) {
	ds, err := t.c.Fetch(ctx, max)
	if err != nil {
		return 0, err
	}
	for i, d := range ds {
		each(d.Data)
		if err := d.Ack(context.Background()); err != nil {
			return i, err
		}
	}
	return len(ds), nil
}

func (mqTaker) flush(context.Context) error { return nil } // an Ack returns once settled
func (t mqTaker) close()                    { t.c.Close() }

// jsClient is JetStream through nats.go.
type jsClient struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (c *jsClient) publish(ctx context.Context, data []byte) error {
	_, err := c.js.Publish(ctx, streamName, data)
	return err
}

func (c *jsClient) consumer(ctx context.Context, group string) (taker, error) {
	con, err := c.js.Consumer(ctx, streamName, group)
	if err != nil {
		return nil, err
	}
	return jsTaker{nc: c.nc, c: con}, nil
}

func (c *jsClient) close() { c.nc.Close() }

type jsTaker struct {
	nc *nats.Conn
	c  jetstream.Consumer
}

// errNoMessage is what take returns when no delivery came in time.
var errNoMessage = errors.New("no message")

func (t jsTaker) take(ctx context.Context, max int, each func([]byte)) (int, error) {
	wait := time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if wait <= time.Millisecond {
		return 0, context.DeadlineExceeded
	}
	b, err := t.c.Fetch(max, jetstream.FetchMaxWait(wait))
	if err != nil {
		return 0, err
	}
	n := 0
	for m := range b.Messages() {
		each(m.Data())
		if err := m.Ack(); err != nil {
			return n, err
		}
		n++
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return n, err
	}
	if n == 0 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w within %v", errNoMessage, wait)
	}
	return n, nil
}

func (t jsTaker) flush(ctx context.Context) error { return t.nc.FlushWithContext(ctx) }
func (jsTaker) close()                            {}
