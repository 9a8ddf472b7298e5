package rpc

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// callCtx is the context of a call on the server: its deadline is the
// caller's, its values are the call's grpc.ServerTransportStream and
// incoming metadata, and it ends when the call ends (the handler returned,
// the client cancelled, the connection closed) or its deadline passes.
//
// It is one allocation-free part of the call's sstream instead of the
// chain context.WithTimeout + two context.WithValue that gRPC builds:
// those cost three allocations, a timer, and an entry in the connection
// context's child map per call, more than a third of what the server
// spends on a small unary call. The channel of Done and the deadline's
// timer are made only when someone asks for Done; until then Err compares
// the deadline with the clock. It implements AfterFunc, so a context
// derived from it (context.WithTimeout in a handler) needs no goroutine.
type callCtx struct {
	st       *sstream
	deadline time.Time // zero: none
	md       metadata.MD

	mu     sync.Mutex
	err    error
	done   chan struct{}           // made by the first Done
	timer  *time.Timer             // the deadline's, armed with done
	afters map[*afterFunc]struct{} // AfterFuncs not run nor stopped yet
}

// The keys under which grpc looks up a call's ServerTransportStream and
// incoming metadata, found by asking grpc itself (probeKeys). Both are nil
// if grpc stopped looking them up that way: the server then wraps the call
// context with grpc's own constructors.
var streamKey, mdKey = probeKeys()

// keyProbe records the key of the last Value asked of it.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(k any) any { p.key = k; return nil }

func probeKeys() (stream, md any) {
	p := &keyProbe{Context: context.Background()}
	grpc.ServerTransportStreamFromContext(p)
	stream, p.key = p.key, nil
	metadata.FromIncomingContext(p)
	return stream, p.key
}

// closedChan is the Done of a context that ended before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
			if !c.deadline.IsZero() {
				c.timer = time.AfterFunc(time.Until(c.deadline), c.expire)
			}
		}
	}
	return c.done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err == nil && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return c.cancel(context.DeadlineExceeded)
	}
	return err
}

func (c *callCtx) Value(key any) any {
	if key == nil {
		return nil
	}
	switch key {
	case streamKey:
		return (*transportStream)(c.st)
	case mdKey:
		if c.md != nil {
			return c.md
		}
	}
	return nil
}

func (c *callCtx) String() string { return "rpc call context " + c.st.m.full }

func (c *callCtx) expire() { c.cancel(context.DeadlineExceeded) }

// cancel ends the context with err unless it ended already; it returns the
// error the context ended with.
func (c *callCtx) cancel(err error) error {
	c.mu.Lock()
	if c.err != nil {
		err = c.err
		c.mu.Unlock()
		return err
	}
	c.err = err
	if c.done != nil {
		close(c.done) // never closedChan: that one is only handed out after the end
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for a := range afters {
		go a.run()
	}
	return err
}

// AfterFunc runs f in its own goroutine once the context ends, as
// context.AfterFunc; the function it returns stops that, reporting whether
// it did. context.WithCancel and friends use it for contexts derived from
// this one.
func (c *callCtx) AfterFunc(f func()) func() bool {
	a := &afterFunc{c: c, f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go a.run()
		return a.stop
	}
	if c.afters == nil {
		c.afters = map[*afterFunc]struct{}{}
	}
	c.afters[a] = struct{}{}
	c.mu.Unlock()
	return a.stop
}

type afterFunc struct {
	c    *callCtx
	once sync.Once
	f    func()
}

func (a *afterFunc) run() { a.once.Do(a.f) }

// stop keeps f from running and forgets it, so that a long stream whose
// handler derives a context per message holds none of the stopped ones.
func (a *afterFunc) stop() bool {
	stopped := false
	a.once.Do(func() { stopped = true })
	if stopped {
		a.c.mu.Lock()
		delete(a.c.afters, a)
		a.c.mu.Unlock()
	}
	return stopped
}

var _ interface {
	context.Context
	AfterFunc(func()) func() bool
} = (*callCtx)(nil)
