package ipc

import (
	"context"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// ZeroCopier sends and receives messages in place, in the transport's own
// shared memory, without the copies of Send and Recv. Only shm:// connections
// have one; get it with ZeroCopy.
//
// Reserve and Commit are a Send in two steps: Reserve returns room for a
// message of up to MaxReserve bytes, the caller writes the message there
// and Commit sends it. RecvInPlace and Release are a Recv in two steps:
// RecvInPlace returns the next message where it lies, valid until Release.
// Between the two steps the direction is held: other goroutines' Sends (or
// Recvs) wait, and the same goroutine must complete the pair before it
// calls Send (or Recv) again. The memory must not be used after Commit,
// Release or Close.
type ZeroCopier struct {
	z    zeroCopier
	addr string
}

type zeroCopier interface {
	Reserve(ctx context.Context, n int) ([]byte, error)
	Commit(n int) error
	RecvInPlace(ctx context.Context) ([]byte, error)
	Release() error
	MaxReserve() int
}

// ZeroCopy returns the zero-copy calls of c, and false if its transport
// has none.
func ZeroCopy(c Conn) (*ZeroCopier, bool) {
	u, ok := c.(interface{ Unwrap() transport.Conn })
	if !ok {
		return nil, false
	}
	z, ok := u.Unwrap().(zeroCopier)
	if !ok {
		return nil, false
	}
	var addr string
	if w, ok := c.(*conn); ok {
		addr = w.addr
	}
	return &ZeroCopier{z: z, addr: addr}, true
}

// MaxReserve returns the largest message Reserve accepts; RecvInPlace
// returns messages up to this size without copying them (larger ones are
// reassembled in a buffer of the connection).
func (z *ZeroCopier) MaxReserve() int { return z.z.MaxReserve() }

// Reserve waits, as Send does, for room for a message of n bytes and
// returns it. n above MaxReserve gives ErrMessageTooLarge.
func (z *ZeroCopier) Reserve(ctx context.Context, n int) ([]byte, error) {
	b, err := z.z.Reserve(ctx, n)
	return b, ipcerr.Wrap("reserve", z.addr, err)
}

// Commit sends the first n bytes of the reserved room as one message.
func (z *ZeroCopier) Commit(n int) error {
	return ipcerr.Wrap("commit", z.addr, z.z.Commit(n))
}

// RecvInPlace waits, as Recv does, for the next message and returns it in
// place.
func (z *ZeroCopier) RecvInPlace(ctx context.Context) ([]byte, error) {
	b, err := z.z.RecvInPlace(ctx)
	return b, ipcerr.Wrap("recv", z.addr, err)
}

// Release frees the message returned by RecvInPlace.
func (z *ZeroCopier) Release() error {
	return ipcerr.Wrap("release", z.addr, z.z.Release())
}
