package rpc

import (
	"context"
	"io"
	"sync"
)

// inbox holds the messages of a stream that arrived and were not read yet.
// The peer may send at most window of them before it is granted more
// (credit), so an inbox never holds more than window messages: a slow
// reader costs the connection nothing but its own bounded buffer.
type inbox struct {
	mu     sync.Mutex
	q      [][]byte
	end    bool  // no more messages: half-close or status
	err    error // ends reading at once (cancelled, connection gone)
	notify chan struct{}
	window int
	read   int // messages read since the last grant
}

func (b *inbox) init(window int) {
	b.window = window
	b.notify = make(chan struct{}, 1)
}

func (b *inbox) signal() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// push adds msg (owned by the inbox from now on); it reports false if the
// sender overran its window, a protocol violation.
func (b *inbox) push(msg []byte) bool {
	b.mu.Lock()
	if len(b.q) >= b.window {
		b.mu.Unlock()
		return false
	}
	b.q = append(b.q, msg)
	b.mu.Unlock()
	b.signal()
	return true
}

// close marks the end of the messages.
func (b *inbox) close() {
	b.mu.Lock()
	b.end = true
	b.mu.Unlock()
	b.signal()
}

// fail ends reading with err (if not ended already).
func (b *inbox) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	b.signal()
}

// pop returns the next message, io.EOF after the last, or the error the
// inbox failed with. grant is the credit to give back to the sender (0: none
// yet; credit is returned in batches of half a window).
func (b *inbox) pop(ctx context.Context) (msg []byte, grant int, err error) {
	for {
		b.mu.Lock()
		switch {
		case b.err != nil:
			err = b.err
		case len(b.q) > 0:
			msg = b.q[0]
			b.q[0] = nil
			b.q = b.q[1:]
			if len(b.q) == 0 {
				b.q = b.q[:0:0]
			}
			b.read++
			if b.read >= (b.window+1)/2 {
				grant, b.read = b.read, 0
			}
		case b.end:
			err = io.EOF
		default:
			b.mu.Unlock()
			select {
			case <-b.notify:
				continue
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
		b.mu.Unlock()
		return msg, grant, err
	}
}

// credit is the number of messages a stream may still send to its peer.
type credit struct {
	mu     sync.Mutex
	n      int
	err    error
	notify chan struct{}
}

func (c *credit) init(n int) {
	c.n = n
	c.notify = make(chan struct{}, 1)
}

func (c *credit) add(n int) {
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *credit) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// take waits for one credit; done ends the wait early with doneErr.
func (c *credit) take(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return err
		}
		if c.n > 0 {
			c.n--
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// bufPool holds frame buffers for sending.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // keep the pool small; large buffers go to the collector
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
