//go:build linux

package shmconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
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

// busyWait bounds the write of the hello that refuses a client when the
// listener is busy: the socket is new, so the write never has to wait.
const busyWait = 100 * time.Millisecond

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

// Listener accepts shm connections at a Unix socket. A goroutine of its
// own accepts the clients' sockets and sets each connection up in a
// transport.Backlog: set-ups run concurrently, each bounded by
// Options.SetupTimeout, at most Options.MaxPendingSetups at a time
// (counting those set up and waiting for Accept).
type Listener struct {
	l    transport.Listener
	o    transport.Options
	path string
	b    *transport.Backlog
	wg   sync.WaitGroup
	once sync.Once
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
	sl := &Listener{l: l, o: *o, path: path, b: transport.NewBacklog(o)}
	sl.wg.Add(1)
	go sl.loop()
	return sl, nil
}

// Accept returns the next connection set up. A client whose set-up fails
// (refused credentials, another version, a client that goes away or says
// nothing for SetupTimeout) is told why when possible and dropped without
// Accept seeing it.
func (l *Listener) Accept(ctx context.Context) (transport.Conn, error) {
	return l.b.Accept(ctx)
}

// loop accepts the clients' sockets until Close and starts their set-ups.
func (l *Listener) loop() {
	defer l.wg.Done()
	pause := time.Duration(0)
	for {
		c, err := l.l.Accept(context.Background())
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory: wait a little, as net/http's
			// server does, and try again.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
				continue
			case <-l.b.Stopped():
				return
			}
		}
		pause = 0
		sc, ok := c.(setupConn)
		if !ok { // package sock's unix connections all are
			c.Close()
			continue
		}
		l.b.Go(func(ctx context.Context) (transport.Conn, error) {
			conn, err := serverHandshake(ctx, sc, &l.o)
			if err != nil {
				sc.Close()
				return nil, err
			}
			return conn, nil
		}, func() { refuseBusy(sc) })
	}
}

// refuseBusy tells a client that the listener holds MaxPendingSetups
// connections already, and closes its socket.
func refuseBusy(sc setupConn) {
	ctx, cancel := context.WithTimeout(context.Background(), busyWait)
	reply := hello{version: helloVersion, role: roleServer, status: statusBusy}
	_ = sc.Send(ctx, reply.encode())
	cancel()
	sc.Close()
}

// Close stops listening, removes the socket file, ends the set-ups under
// way and closes the connections set up and not accepted.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		l.b.Stop()
		err = l.l.Close()
		l.wg.Wait()
		l.b.Drain()
	})
	return err
}

// SetupStats returns the counts of the listener's set-ups.
func (l *Listener) SetupStats() transport.SetupStats { return l.b.Stats() }

// Addr returns the socket's path.
func (l *Listener) Addr() string { return l.path }

func allowed(uids []int, uid int) bool {
	return uids == nil || slices.Contains(uids, uid)
}

// segmentSize is the data area holding two rings of capacity bytes.
func segmentSize(capacity int) int { return 2 * (shm.RingSize(capacity) + shm.Align) }

// serverHandshake sets up the connection of sc under ctx, which ends at
// the set-up's deadline.
func serverHandshake(hctx context.Context, sc setupConn, o *transport.Options) (*Conn, error) {
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
	hctx, cancel := context.WithTimeout(ctx, setupTimeout(o))
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
		if !errors.Is(err, io.EOF) {
			return nil, ctxErr(ctx, err)
		}
		// The server closed the socket, maybe after a hello that says why
		// (a busy listener answers without reading): read it.
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

// setupTimeout is o's SetupTimeout, or its default.
func setupTimeout(o *transport.Options) time.Duration {
	if o.SetupTimeout > 0 {
		return o.SetupTimeout
	}
	return transport.DefaultSetupTimeout
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
		case statusBusy:
			err = fmt.Errorf("%w: the server has as many connections pending as it allows", ipcerr.ErrListenerBusy)
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
