//go:build linux

package shmconn

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/segown"
	"github.com/ipcgo/ipc/internal/transport"
	"github.com/ipcgo/ipc/internal/transport/sock"
	"github.com/ipcgo/ipc/shm"
)

func init() {
	transport.Register("shm", transport.Driver{
		Listen: func(target string, o *transport.Options) (transport.Listener, error) { return Listen(target, o) },
		Dial: func(ctx context.Context, target string, o *transport.Options) (transport.Conn, error) {
			return Dial(ctx, target, o)
		},
	})
}

// HandshakeTimeout bounds the set-up of a connection, on both sides, when
// the context allows longer: a client that connects and says nothing
// cannot hold Accept longer than this.
const HandshakeTimeout = 5 * time.Second

// setupMax bounds the messages of the set-up socket.
const setupMax = 4096

// setupConn is the unix:// connection (package sock) that sets an shm
// connection up and then signals liveness.
type setupConn interface {
	transport.Conn
	SendFiles(ctx context.Context, msg []byte, files ...*os.File) error
	RecvFiles(ctx context.Context, buf []byte) ([]byte, []*os.File, error)
	PeerCred() (sock.Cred, error)
}

// setupOptions are the options of the set-up socket: o's file mode, small
// messages, and no uid check (the handshake checks, so that it can tell a
// refused client why).
func setupOptions(o *transport.Options) *transport.Options {
	return &transport.Options{MaxMessageSize: setupMax, Perm: o.Perm}
}

func unixDriver() (transport.Driver, error) {
	d, ok := transport.Lookup("unix") // registered by package sock
	if !ok || d.Listen == nil || d.Dial == nil {
		return d, fmt.Errorf("%w: the shm transport needs unix sockets", ipcerr.ErrUnsupported)
	}
	return d, nil
}

// Listener accepts shm connections at a Unix socket.
type Listener struct {
	l    transport.Listener
	o    transport.Options
	path string
}

// Listen creates the Unix socket at path, as the unix:// transport does
// (mode o.Perm; a socket file left by a dead process is replaced, a live
// listener gives ErrAddrInUse, any other file is left alone), and listens.
func Listen(path string, o *transport.Options) (*Listener, error) {
	d, err := unixDriver()
	if err != nil {
		return nil, err
	}
	l, err := d.Listen(path, setupOptions(o))
	if err != nil {
		return nil, err
	}
	return &Listener{l: l, o: *o, path: path}, nil
}

// Accept waits for a client and sets its connection up. A client whose
// set-up fails (refused credentials, another version, a client that goes
// away or says nothing for HandshakeTimeout) is told why when possible and
// dropped, and Accept waits for the next one.
func (l *Listener) Accept(ctx context.Context) (transport.Conn, error) {
	for {
		c, err := l.l.Accept(ctx)
		if err != nil {
			return nil, err
		}
		sc, ok := c.(setupConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%w: unix connections without descriptor passing", ipcerr.ErrUnsupported)
		}
		conn, err := serverHandshake(ctx, sc, &l.o)
		if err == nil {
			return conn, nil
		}
		sc.Close()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// Close stops listening and removes the socket file.
func (l *Listener) Close() error { return l.l.Close() }

// Addr returns the socket's path.
func (l *Listener) Addr() string { return l.path }

func allowed(uids []int, uid int) bool {
	return uids == nil || slices.Contains(uids, uid)
}

// segmentSize is the data area holding two rings of capacity bytes.
func segmentSize(capacity int) int { return 2 * (shm.RingSize(capacity) + shm.Align) }

func serverHandshake(ctx context.Context, sc setupConn, o *transport.Options) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	cred, err := sc.PeerCred()
	if err != nil {
		return nil, err
	}
	b, err := sc.Recv(hctx, nil)
	if err != nil {
		return nil, err
	}
	reply := hello{version: helloVersion, role: roleServer, ringSize: uint64(o.RingSize), maxMsg: uint64(o.MaxMessageSize)}
	if _, err := decodeHello(b, roleClient); err != nil {
		reply.status = statusVersion
		_ = sc.Send(hctx, reply.encode())
		return nil, err
	}
	if !allowed(o.AllowUIDs, cred.UID) {
		reply.status = statusNotAllowed
		_ = sc.Send(hctx, reply.encode())
		return nil, fmt.Errorf("%w: uid %d", ipcerr.ErrPeerNotAllowed, cred.UID)
	}
	seg, tx, rx, err := newSegment(o.RingSize)
	if err != nil {
		reply.status = statusFailed
		_ = sc.Send(hctx, reply.encode())
		return nil, err
	}
	if err := sc.SendFiles(hctx, reply.encode(), seg.File()); err != nil {
		_ = segown.Unmap(seg) // the rings go unused
		return nil, err
	}
	return newConn(sc, seg, tx, rx, cred, optsLike{max: o.MaxMessageSize, spin: o.Spin}), nil
}

// newSegment creates the anonymous segment of a connection, with its two
// rings; tx is the server's sending ring.
func newSegment(capacity int) (seg *shm.Segment, tx, rx *shm.Ring, err error) {
	seg, err = shm.CreateAnonymous(segmentSize(capacity), &shm.Config{Perm: 0o600, Slots: 2, Objects: 2})
	if err != nil {
		return nil, nil, nil, err
	}
	if tx, err = seg.AllocRing(ringS2C, capacity); err == nil {
		rx, err = seg.AllocRing(ringC2S, capacity)
	}
	if err != nil {
		_ = segown.Unmap(seg) // the rings go unused
		return nil, nil, nil, err
	}
	return seg, tx, rx, nil
}

// Dial connects to the listener at path and maps the connection's
// segment.
func Dial(ctx context.Context, path string, o *transport.Options) (*Conn, error) {
	d, err := unixDriver()
	if err != nil {
		return nil, err
	}
	c, err := d.Dial(ctx, path, setupOptions(o))
	if err != nil {
		return nil, err
	}
	sc, ok := c.(setupConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%w: unix connections without descriptor passing", ipcerr.ErrUnsupported)
	}
	conn, err := clientHandshake(ctx, sc, o)
	if err != nil {
		sc.Close()
		return nil, err
	}
	return conn, nil
}

func clientHandshake(ctx context.Context, sc setupConn, o *transport.Options) (*Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	cred, err := sc.PeerCred()
	if err != nil {
		return nil, err
	}
	if !allowed(o.AllowUIDs, cred.UID) {
		return nil, fmt.Errorf("%w: the server runs as uid %d", ipcerr.ErrPeerNotAllowed, cred.UID)
	}
	h := hello{version: helloVersion, role: roleClient, ringSize: uint64(o.RingSize), maxMsg: uint64(o.MaxMessageSize)}
	if err := sc.Send(hctx, h.encode()); err != nil {
		return nil, ctxErr(ctx, err)
	}
	b, files, err := sc.RecvFiles(hctx, nil)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: the server closed the connection during set-up", io.ErrUnexpectedEOF)
		}
		return nil, ctxErr(ctx, err)
	}
	f, sh, err := serverHello(b, files)
	if err != nil {
		return nil, err
	}
	seg, err := shm.OpenFile(f) // closes f
	if err != nil {
		return nil, err
	}
	rx, err := seg.Ring(ringS2C)
	var tx *shm.Ring
	if err == nil {
		tx, err = seg.Ring(ringC2S)
	}
	if err == nil && (uint64(rx.Capacity()) != sh.ringSize || uint64(tx.Capacity()) != sh.ringSize) {
		err = fmt.Errorf("%w: rings of %d and %d bytes, hello says %d", ipcerr.ErrCorruptFrame, rx.Capacity(), tx.Capacity(), sh.ringSize)
	}
	if err != nil {
		_ = segown.Unmap(seg) // the rings go unused
		return nil, err
	}
	return newConn(sc, seg, tx, rx, cred, optsLike{max: o.MaxMessageSize, spin: o.Spin}), nil
}

// serverHello checks the server's hello and the descriptors that came with
// it, and returns the segment's file; every other file is closed.
func serverHello(b []byte, files []*os.File) (*os.File, hello, error) {
	h, err := decodeHello(b, roleServer)
	if err == nil {
		switch h.status {
		case statusOK:
		case statusVersion:
			err = fmt.Errorf("%w: the server does not speak shm protocol %d", ipcerr.ErrVersion, helloVersion)
		case statusNotAllowed:
			err = fmt.Errorf("%w: refused by the server", ipcerr.ErrPeerNotAllowed)
		default:
			err = fmt.Errorf("shmconn: the server failed to set the connection up (status %d)", h.status)
		}
	}
	if err == nil && len(files) != 1 {
		err = fmt.Errorf("%w: %d descriptors with the hello, want 1", ipcerr.ErrCorruptFrame, len(files))
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, h, err
	}
	return files[0], h, nil
}

// ctxErr prefers ctx's error to the timeout its cancellation caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && transport.IsTimeout(err) {
		return cerr
	}
	return err
}
