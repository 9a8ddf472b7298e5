package mq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Queue is a handle on a queue store: a directory (local backend) or a
// NATS server or cluster (JetStream backend). It is safe for concurrent
// use; any number of handles, in any number of processes, may be open on
// the same store.
type Queue struct {
	addr   string
	kind   string // "file" or "nats"
	b      backend
	closed atomic.Bool

	mu        sync.Mutex
	consumers map[*Consumer]struct{}
}

// Open opens the queue store at addr: "file:///abs/dir" (the directory is
// created, 0700 by default) or "nats://host:port[,nats://host2:port...]".
// ctx bounds the connection and recovery work Open does.
func Open(ctx context.Context, addr string, cfg *Config) (*Queue, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, opErr("open", "", "", err)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, opErr("open", "", "", fmt.Errorf("%w: %q: %v", ErrBadURL, addr, err))
	}
	q := &Queue{addr: addr, consumers: make(map[*Consumer]struct{})}
	switch u.Scheme {
	case "file":
		if u.Host != "" || u.Path == "" || u.Path[0] != '/' {
			return nil, opErr("open", "", "", fmt.Errorf("%w: %q: want file:///absolute/dir", ErrBadURL, addr))
		}
		q.kind = "file"
		q.b, err = openLocal(ctx, u.Path, c)
	case "nats", "tls":
		q.kind = "nats"
		q.b, err = openJetStream(ctx, addr, c)
	default:
		return nil, opErr("open", "", "", fmt.Errorf("%w: %q: scheme must be file or nats", ErrBadURL, addr))
	}
	if err != nil {
		return nil, opErr("open", "", "", err)
	}
	return q, nil
}

// Addr returns the address the queue was opened with.
func (q *Queue) Addr() string { return q.addr }

// Backend returns "file" or "nats".
func (q *Queue) Backend() string { return q.kind }

// Close closes the handle and every Consumer made from it; deliveries
// they hold and did not settle are delivered again (at once by the local
// backend, after AckWait by JetStream). Later calls return net.ErrClosed.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	q.mu.Lock()
	cs := make([]*Consumer, 0, len(q.consumers))
	for c := range q.consumers {
		cs = append(cs, c)
	}
	q.mu.Unlock()
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	errs = append(errs, q.b.close())
	return opErr("close", "", "", errors.Join(errs...))
}

func (q *Queue) check() error {
	if q.closed.Load() {
		return net.ErrClosed
	}
	return nil
}

// CreateStream creates a stream, or returns the existing one of that name
// when its configuration is the same (after defaults); a different one is
// ErrExists.
func (q *Queue) CreateStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error) {
	if err := q.check(); err != nil {
		return StreamInfo{}, opErr("create-stream", cfg.Name, "", err)
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return StreamInfo{}, opErr("create-stream", cfg.Name, "", err)
	}
	si, err := q.b.createStream(ctx, c)
	return si, opErr("create-stream", cfg.Name, "", err)
}

// DeleteStream deletes a stream, its messages and its groups.
func (q *Queue) DeleteStream(ctx context.Context, name string) error {
	if err := q.check(); err != nil {
		return opErr("delete-stream", name, "", err)
	}
	return opErr("delete-stream", name, "", q.b.deleteStream(ctx, name))
}

// StreamInfo describes a stream as it is now.
func (q *Queue) StreamInfo(ctx context.Context, name string) (StreamInfo, error) {
	if err := q.check(); err != nil {
		return StreamInfo{}, opErr("stream-info", name, "", err)
	}
	si, err := q.b.streamInfo(ctx, name)
	return si, opErr("stream-info", name, "", err)
}

// Streams describes every stream, sorted by name.
func (q *Queue) Streams(ctx context.Context) ([]StreamInfo, error) {
	if err := q.check(); err != nil {
		return nil, opErr("streams", "", "", err)
	}
	ss, err := q.b.streams(ctx)
	return ss, opErr("streams", "", "", err)
}

// Publish appends data to a stream and returns once it is durable under
// the stream's SyncPolicy, with its sequence number.
func (q *Queue) Publish(ctx context.Context, stream string, data []byte, opts *PublishOptions) (PubAck, error) {
	if err := q.check(); err != nil {
		return PubAck{}, opErr("publish", stream, "", err)
	}
	if err := opts.validate(); err != nil {
		return PubAck{}, opErr("publish", stream, "", err)
	}
	if opts == nil {
		opts = &PublishOptions{}
	}
	pa, err := q.b.publish(ctx, stream, data, opts)
	return pa, opErr("publish", stream, "", err)
}

// Read returns up to n stored messages of a stream from sequence seq on
// (0: the first), without delivering them to any group. It is how a
// dead-letter stream is inspected.
func (q *Queue) Read(ctx context.Context, stream string, seq uint64, n int) ([]StoredMessage, error) {
	if err := q.check(); err != nil {
		return nil, opErr("read", stream, "", err)
	}
	if n <= 0 {
		return nil, opErr("read", stream, "", fmt.Errorf("%w: n %d", ErrBadConfig, n))
	}
	ms, err := q.b.read(ctx, stream, seq, n)
	return ms, opErr("read", stream, "", err)
}

// Replay moves up to n messages of a dead-letter stream back to the
// streams they came from (data, header without the Mq-Dead-* entries, key
// and priority as published; a fresh attempt count) and removes them from
// the dead-letter stream. It returns how many it moved. A message is
// published before it is removed, so a crash in between replays it twice,
// never loses it.
func (q *Queue) Replay(ctx context.Context, deadLetter string, n int) (int, error) {
	if err := q.check(); err != nil {
		return 0, opErr("replay", deadLetter, "", err)
	}
	ms, err := q.Read(ctx, deadLetter, 0, n)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, m := range ms {
		orig := m.Header.Get(HeaderDeadStream)
		if orig == "" {
			return done, opErr("replay", deadLetter, "", fmt.Errorf("%w: message %d carries no %s header", ErrBadConfig, m.Seq, HeaderDeadStream))
		}
		h := Header{}
		for k, v := range m.Header {
			if !hasReservedPrefix(k) {
				h[k] = v
			}
		}
		if _, err := q.b.publish(ctx, orig, m.Data, &PublishOptions{Header: h, Key: m.Key, Priority: m.Priority}); err != nil {
			return done, opErr("replay", orig, "", err)
		}
		if err := q.b.deleteMsg(ctx, deadLetter, m.Seq); err != nil {
			return done, opErr("replay", deadLetter, "", err)
		}
		done++
	}
	return done, nil
}

// CreateGroup creates a consumer group on a stream, or returns the
// existing one when its configuration is the same; a different one is
// ErrExists.
func (q *Queue) CreateGroup(ctx context.Context, stream string, cfg GroupConfig) (GroupInfo, error) {
	if err := q.check(); err != nil {
		return GroupInfo{}, opErr("create-group", stream, cfg.Name, err)
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return GroupInfo{}, opErr("create-group", stream, cfg.Name, err)
	}
	gi, err := q.b.createGroup(ctx, stream, c)
	return gi, opErr("create-group", stream, cfg.Name, err)
}

// DeleteGroup deletes a group and its state.
func (q *Queue) DeleteGroup(ctx context.Context, stream, group string) error {
	if err := q.check(); err != nil {
		return opErr("delete-group", stream, group, err)
	}
	return opErr("delete-group", stream, group, q.b.deleteGroup(ctx, stream, group))
}

// GroupInfo describes a group as it is now.
func (q *Queue) GroupInfo(ctx context.Context, stream, group string) (GroupInfo, error) {
	if err := q.check(); err != nil {
		return GroupInfo{}, opErr("group-info", stream, group, err)
	}
	gi, err := q.b.groupInfo(ctx, stream, group)
	return gi, opErr("group-info", stream, group, err)
}

// Consumer returns a consumer in an existing group. Consumers of one
// group compete for its messages.
func (q *Queue) Consumer(ctx context.Context, stream, group string) (*Consumer, error) {
	if err := q.check(); err != nil {
		return nil, opErr("consumer", stream, group, err)
	}
	cb, err := q.b.consumer(ctx, stream, group)
	if err != nil {
		return nil, opErr("consumer", stream, group, err)
	}
	c := &Consumer{q: q, b: cb, stream: stream, group: group}
	q.mu.Lock()
	q.consumers[c] = struct{}{}
	q.mu.Unlock()
	return c, nil
}

// PubAck is what a publish returns.
type PubAck struct {
	Stream    string
	Seq       uint64
	Duplicate bool // the ID was seen within the window; Seq is the first one's
}

// StreamInfo describes a stream.
type StreamInfo struct {
	Config   StreamConfig
	Msgs     uint64 // messages stored
	Bytes    uint64 // bytes stored
	FirstSeq uint64
	LastSeq  uint64
	Groups   []string // sorted
}

// GroupInfo describes a group.
type GroupInfo struct {
	Stream string
	Config GroupConfig
	// Pending is the number of messages not yet delivered to the group.
	Pending uint64
	// InFlight is the number of deliveries held and not yet settled.
	InFlight int
	// Redelivered counts deliveries that were attempt 2 or later.
	Redelivered uint64
	// DeadLettered counts messages sent to the dead-letter stream (or
	// dropped for want of one).
	DeadLettered uint64
	// AckFloor: every sequence up to it is settled for the group.
	AckFloor uint64
	// OldestUnacked is when the oldest message not yet acked by the group
	// was published; zero when none.
	OldestUnacked time.Time
}

// StoredMessage is a message as stored in a stream.
type StoredMessage struct {
	Stream    string
	Seq       uint64
	Data      []byte
	Header    Header
	ID        string
	Key       string
	Priority  int
	Published time.Time
	NotBefore time.Time // deliverable from; zero when at once
}

// Consumer takes deliveries for one group. Next and Fetch may be called
// from several goroutines; each delivery goes to one of them.
type Consumer struct {
	q             *Queue
	b             consumerBackend
	stream, group string
	closed        atomic.Bool
}

// Next waits for the next delivery of the group and returns it.
func (c *Consumer) Next(ctx context.Context) (*Delivery, error) {
	ds, err := c.fetch(ctx, 1, "next")
	if err != nil {
		return nil, err
	}
	return ds[0], nil
}

// Fetch waits until at least one delivery is ready and returns up to n.
func (c *Consumer) Fetch(ctx context.Context, n int) ([]*Delivery, error) {
	if n <= 0 {
		return nil, opErr("fetch", c.stream, c.group, fmt.Errorf("%w: n %d", ErrBadConfig, n))
	}
	return c.fetch(ctx, n, "fetch")
}

func (c *Consumer) fetch(ctx context.Context, n int, op string) ([]*Delivery, error) {
	if c.closed.Load() || c.q.closed.Load() {
		return nil, opErr(op, c.stream, c.group, net.ErrClosed)
	}
	ds, err := c.b.fetch(ctx, n)
	if err != nil {
		return nil, opErr(op, c.stream, c.group, err)
	}
	for _, d := range ds {
		d.Stream, d.Group = c.stream, c.group
	}
	return ds, nil
}

// Close stops the consumer; deliveries it holds and did not settle are
// delivered again.
func (c *Consumer) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.q.mu.Lock()
	delete(c.q.consumers, c)
	c.q.mu.Unlock()
	return opErr("close", c.stream, c.group, c.b.close())
}

// Delivery is one attempt at delivering a message to a group. Settle it
// with exactly one of Ack, Nak or Term; InProgress extends its deadline.
type Delivery struct {
	StoredMessage
	Group string
	// Attempt is 1 for the first delivery of the message to the group.
	Attempt int
	// Deadline is when the delivery will be given to another consumer if
	// not settled or extended.
	Deadline time.Time

	s       settler
	settled atomic.Bool
}

// settler is how a backend settles a delivery.
type settler interface {
	ack(ctx context.Context, d *Delivery) error
	nak(ctx context.Context, d *Delivery, delay time.Duration) error
	inProgress(ctx context.Context, d *Delivery) error
	term(ctx context.Context, d *Delivery, reason string) error
}

// Ack settles the delivery as done: the group never delivers the message
// again.
func (d *Delivery) Ack(ctx context.Context) error {
	return d.settle(ctx, "ack", func() error { return d.s.ack(ctx, d) })
}

// Nak settles the delivery as failed: the message is delivered again
// after delay (0: after the group's Backoff for this attempt), or goes to
// the dead-letter stream when its attempts are used up.
func (d *Delivery) Nak(ctx context.Context, delay time.Duration) error {
	if delay < 0 {
		return opErr("nak", d.Stream, d.Group, fmt.Errorf("%w: negative delay", ErrBadConfig))
	}
	return d.settle(ctx, "nak", func() error { return d.s.nak(ctx, d, delay) })
}

// Term settles the delivery as never to be retried: the message goes to
// the dead-letter stream (reason "terminated") if the group has one.
func (d *Delivery) Term(ctx context.Context) error {
	return d.settle(ctx, "term", func() error { return d.s.term(ctx, d, "terminated") })
}

// InProgress extends the delivery's deadline by the group's AckWait.
func (d *Delivery) InProgress(ctx context.Context) error {
	if d.settled.Load() {
		return opErr("in-progress", d.Stream, d.Group, ErrAcked)
	}
	return opErr("in-progress", d.Stream, d.Group, d.s.inProgress(ctx, d))
}

func (d *Delivery) settle(ctx context.Context, op string, f func() error) error {
	if d.settled.Swap(true) {
		return opErr(op, d.Stream, d.Group, ErrAcked)
	}
	if err := f(); err != nil {
		// A settle that did not reach the store may be retried.
		if !errors.Is(err, ErrDeliveryLost) {
			d.settled.Store(false)
		}
		return opErr(op, d.Stream, d.Group, err)
	}
	return nil
}

// backend is what a store does; Queue adds argument checks, closed-handle
// checks and error wrapping. Names and configurations reaching a backend
// are validated and have their defaults.
type backend interface {
	createStream(ctx context.Context, cfg StreamConfig) (StreamInfo, error)
	deleteStream(ctx context.Context, name string) error
	streamInfo(ctx context.Context, name string) (StreamInfo, error)
	streams(ctx context.Context) ([]StreamInfo, error)
	// publish: opts is never nil and is validated.
	publish(ctx context.Context, stream string, data []byte, opts *PublishOptions) (PubAck, error)
	read(ctx context.Context, stream string, seq uint64, n int) ([]StoredMessage, error)
	deleteMsg(ctx context.Context, stream string, seq uint64) error
	createGroup(ctx context.Context, stream string, cfg GroupConfig) (GroupInfo, error)
	deleteGroup(ctx context.Context, stream, group string) error
	groupInfo(ctx context.Context, stream, group string) (GroupInfo, error)
	consumer(ctx context.Context, stream, group string) (consumerBackend, error)
	close() error
}

// consumerBackend hands out deliveries; each carries its settler.
type consumerBackend interface {
	// fetch waits until at least one delivery is ready or ctx ends, and
	// returns 1 to n deliveries.
	fetch(ctx context.Context, n int) ([]*Delivery, error)
	close() error
}
