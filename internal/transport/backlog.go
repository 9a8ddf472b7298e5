package transport

import (
	"context"
	"net"
)

// Backlog hands the connections a listener's background goroutine has set
// up to Accept, for transports whose set-up is not the kernel's accept(2).
type Backlog struct {
	conns chan Conn
	done  chan struct{}
}

// NewBacklog returns a backlog that holds up to n connections not yet
// accepted.
func NewBacklog(n int) *Backlog {
	return &Backlog{conns: make(chan Conn, n), done: make(chan struct{})}
}

// Offer waits until Accept takes c or the backlog stops; a connection that
// no one will accept is closed.
func (b *Backlog) Offer(c Conn) {
	select {
	case b.conns <- c:
	case <-b.done:
		c.Close()
	}
}

// Accept returns the next connection, waiting as long as ctx allows; after
// Stop it returns net.ErrClosed.
func (b *Backlog) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-b.conns:
		return c, nil
	case <-b.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop makes Accept return net.ErrClosed and Offer close what it gets. It
// must be called once.
func (b *Backlog) Stop() { close(b.done) }

// Drain closes the connections offered and not accepted. Call it after
// Stop, once no goroutine offers any more.
func (b *Backlog) Drain() {
	for {
		select {
		case c := <-b.conns:
			c.Close()
		default:
			return
		}
	}
}
