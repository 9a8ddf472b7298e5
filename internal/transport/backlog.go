package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The defaults of Options.SetupTimeout and Options.MaxPendingSetups
// (ipc.DefaultConfig).
const (
	DefaultSetupTimeout     = 5 * time.Second
	DefaultMaxPendingSetups = 64
)

// The statuses of the answer of a fifo or posixmq listener to a connection
// request (PROTOCOL.md).
const (
	AnswerOK         = 0
	AnswerBadVersion = 1 // the listener does not speak the request's version
	AnswerBusy       = 2 // the listener holds MaxPendingSetups connections
)

// AnswerStatus is the status of the answer of a listener of protocol
// version ours to a request of version ver; busy: the Backlog refuses it.
func AnswerStatus(ver, ours byte, busy bool) byte {
	switch {
	case ver != ours:
		return AnswerBadVersion
	case busy:
		return AnswerBusy
	}
	return AnswerOK
}

// SetupStats counts what a listener did with the connections it set up.
type SetupStats struct {
	// Pending is the number of connections being set up now.
	Pending int
	// Ready is the number of connections set up and waiting for Accept.
	Ready int
	// Refused counts clients refused because MaxPendingSetups connections
	// were pending or ready (the client was told the listener is busy).
	Refused uint64
	// TimedOut counts set-ups dropped at their SetupTimeout.
	TimedOut uint64
	// Failed counts set-ups that failed otherwise: a peer that went away,
	// spoke another protocol or version, or was not allowed.
	Failed uint64
}

// Backlog is the set-up stage of a listener that sets its connections up
// itself (shm, fifo, posixmq): the listener's own goroutine takes each
// incoming client to Go or Do, every set-up runs under a context of its
// own that ends after SetupTimeout (or at Stop), and the connections set up
// wait in a queue that Accept takes from. At most MaxPendingSetups
// connections are held at a time, being set up or ready; beyond that a
// new client is refused at once (the listener tells it that it is busy),
// so that neither a slow client nor a flood of them holds up the others or
// makes the listener hold more than that many connections' resources.
type Backlog struct {
	ready   chan Conn
	slots   chan struct{} // a token per connection held, pending or ready
	timeout time.Duration
	ctx     context.Context // ends at Stop
	stop    context.CancelFunc
	wg      sync.WaitGroup // set-ups running in goroutines of their own

	pending  atomic.Int64
	refused  atomic.Uint64
	timedOut atomic.Uint64
	failed   atomic.Uint64
}

// NewBacklog returns the set-up stage of a listener with options o; zero
// limits take their defaults.
func NewBacklog(o *Options) *Backlog {
	n, d := o.MaxPendingSetups, o.SetupTimeout
	if n <= 0 {
		n = DefaultMaxPendingSetups
	}
	if d <= 0 {
		d = DefaultSetupTimeout
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Backlog{ready: make(chan Conn, n), slots: make(chan struct{}, n), timeout: d, ctx: ctx, stop: stop}
}

// Setup is a listener's part of setting up one connection. It returns the
// connection, or an error once it has released everything the connection
// held (descriptors, files, queues, segments). It must end soon after ctx
// does.
type Setup func(ctx context.Context) (Conn, error)

// Go runs setup in a goroutine of its own, so that a set-up that waits for
// its peer holds up no other. If MaxPendingSetups connections are already
// held it runs refuse instead, in the caller's goroutine (refuse tells the
// client that the listener is busy, when it can, and releases the client's
// resources; it must not wait for the client), and returns false.
func (b *Backlog) Go(setup Setup, refuse func()) bool {
	if !b.acquire(refuse) {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.run(setup)
	}()
	return true
}

// Do is Go for a set-up that never waits for its peer and refuses a client
// by answering it as it would accept it, with a busy status: it calls
// answer(false) as the set-up, in the caller's goroutine, or answer(true)
// to refuse. answer(true) must release the client's resources and return
// an error.
func (b *Backlog) Do(answer func(busy bool) (Conn, error)) bool {
	if !b.acquire(func() { _, _ = answer(true) }) {
		return false
	}
	b.run(func(context.Context) (Conn, error) { return answer(false) })
	return true
}

func (b *Backlog) acquire(refuse func()) bool {
	if b.ctx.Err() == nil {
		select {
		case b.slots <- struct{}{}:
			b.pending.Add(1)
			return true
		default:
			b.refused.Add(1)
		}
	}
	if refuse != nil {
		refuse()
	}
	return false
}

func (b *Backlog) release() { <-b.slots }

func (b *Backlog) run(setup Setup) {
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	c, err := setup(ctx)
	stopped := b.ctx.Err() != nil
	expired := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	b.pending.Add(-1)
	switch {
	case err != nil:
		if !stopped {
			if expired {
				b.timedOut.Add(1)
			} else {
				b.failed.Add(1)
			}
		}
		b.release()
	case stopped:
		c.Close()
		b.release()
	default:
		b.ready <- c // never blocks: the slot taken is room in ready
	}
}

// Accept returns the next connection set up, waiting as long as ctx
// allows; after Stop it returns net.ErrClosed.
func (b *Backlog) Accept(ctx context.Context) (Conn, error) {
	if b.ctx.Err() != nil {
		return nil, net.ErrClosed
	}
	select {
	case c := <-b.ready:
		b.release()
		if b.ctx.Err() != nil {
			c.Close()
			return nil, net.ErrClosed
		}
		return c, nil
	case <-b.ctx.Done():
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stopped is closed by Stop.
func (b *Backlog) Stopped() <-chan struct{} { return b.ctx.Done() }

// Stop ends the contexts of the set-ups running, refuses new ones and makes
// Accept return net.ErrClosed. It may be called more than once.
func (b *Backlog) Stop() { b.stop() }

// Drain waits for the set-ups running in goroutines of their own to end,
// then closes the connections set up and not accepted. Call it after Stop,
// once the listener's goroutine starts no more set-ups.
func (b *Backlog) Drain() {
	b.wg.Wait()
	for {
		select {
		case c := <-b.ready:
			c.Close()
			b.release()
		default:
			return
		}
	}
}

// Stats returns the counts of the stage.
func (b *Backlog) Stats() SetupStats {
	return SetupStats{
		Pending:  int(b.pending.Load()),
		Ready:    len(b.ready),
		Refused:  b.refused.Load(),
		TimedOut: b.timedOut.Load(),
		Failed:   b.failed.Load(),
	}
}
