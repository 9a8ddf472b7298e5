//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/mmap"
)

// The spin baseline shares one memfd mapping, inherited by the peer as
// descriptor 3:
//
//	0     control page: one word per 128 bytes (below)
//	4096  ping buffer (size bytes, page-rounded): parent -> peer
//	      pong buffer: peer -> parent
//	      ring (spinRing bytes): peer -> parent, for the throughput
//
// Round trip: the parent copies the message into the ping buffer and
// stores the round trip's sequence number in its last eight bytes; the
// peer, spinning on that word, copies the message out and into the pong
// buffer the same way, and the parent spins on the pong buffer's word. A
// 64-byte message is then exactly one cache line each way, word included:
// the ping-pong of a word, the floor of any shared-memory transport. (A
// size that is not a multiple of 8 uses the ping and pong words of the
// control page instead.)
//
// Throughput: an SPSC byte ring (head written by the peer, tail by the
// parent, on separate cache lines), the message copied in and out, the
// indices published after every message, both sides spinning.
const (
	offPing  = 0
	offPong  = 128
	offReady = 256
	offCmd   = 384
	offStop  = 512
	offHead  = 640
	offTail  = 768
	ctlSize  = 4096
	pageSize = 4096

	cmdIdle = 0
	cmdRTT  = 1
	cmdTput = 2
	cmdQuit = 3
)

// spinRing returns the ring size for messages of size bytes: 1 MiB (the
// default Config.RingSize), or four messages' worth for larger ones.
func spinRing(size int) int {
	r := 1 << 20
	for r < 4*size {
		r <<= 1
	}
	return r
}

type spinLayout struct {
	size, ring         int
	ping, pong, ringAt int
	total              int
	inline             bool // the sequence word is the message's last 8 bytes
}

func newSpinLayout(size int) spinLayout {
	buf := (size + pageSize - 1) / pageSize * pageSize
	l := spinLayout{size: size, ring: spinRing(size), ping: ctlSize, inline: size >= 8 && size%8 == 0}
	l.pong = l.ping + buf
	l.ringAt = l.pong + buf
	l.total = l.ringAt + l.ring
	return l
}

// spinMem is the shared mapping.
type spinMem struct {
	l                                     spinLayout
	mem                                   []byte
	ping, pong, ready, cmd, stop, head, t *atomic.Uint64
}

func mapSpin(fd int, l spinLayout) (*spinMem, error) {
	mem, err := mmap.Map(fd, l.total)
	if err != nil {
		return nil, err
	}
	ping, pong := mmap.Uint64(mem, offPing), mmap.Uint64(mem, offPong)
	if l.inline {
		ping, pong = mmap.Uint64(mem, l.ping+l.size-8), mmap.Uint64(mem, l.pong+l.size-8)
	}
	return &spinMem{l: l, mem: mem, ping: ping, pong: pong, ready: mmap.Uint64(mem, offReady),
		cmd: mmap.Uint64(mem, offCmd), stop: mmap.Uint64(mem, offStop), head: mmap.Uint64(mem, offHead),
		t: mmap.Uint64(mem, offTail)}, nil
}

func (s *spinMem) unmap() { _ = unix.Munmap(s.mem) }

// pingBuf and pongBuf are the message buffers, less the sequence word when
// it is inline.
func (s *spinMem) pingBuf() []byte { return s.mem[s.l.ping : s.l.ping+s.l.size-s.inlineWord()] }
func (s *spinMem) pongBuf() []byte { return s.mem[s.l.pong : s.l.pong+s.l.size-s.inlineWord()] }

func (s *spinMem) inlineWord() int {
	if s.l.inline {
		return 8
	}
	return 0
}
func (s *spinMem) ringBuf() []byte { return s.mem[s.l.ringAt : s.l.ringAt+s.l.ring] }

// spinSetup creates the mapping and hands it to the peer.
type spinSetup struct {
	m   *measurement
	l   spinLayout
	mem *spinMem
}

func (s *spinSetup) prepare() ([]string, []*os.File, error) {
	s.l = newSpinLayout(s.m.size)
	fd, err := unix.MemfdCreate("ipcbench", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: memfd_create: %w", errSkip, err)
	}
	f := os.NewFile(uintptr(fd), "ipcbench-spin")
	if err := f.Truncate(int64(s.l.total)); err != nil {
		f.Close()
		return nil, nil, err
	}
	if s.mem, err = mapSpin(fd, s.l); err != nil {
		f.Close()
		return nil, nil, err
	}
	return []string{"--mem", strconv.Itoa(s.l.total)}, []*os.File{f}, nil
}

func (s *spinSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *spinSetup) connect(ctx context.Context) (session, error) {
	for s.mem.ready.Load() == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
	sess := &spinSession{m: s.m, mem: s.mem}
	s.mem = nil // the session unmaps it
	return sess, nil
}

func (s *spinSetup) cleanup() {
	if s.mem != nil {
		s.mem.unmap()
	}
}

// spinSession is the parent's side.
type spinSession struct {
	m   *measurement
	mem *spinMem
}

// errSpinTimeout is the error of a spin wait that reached its deadline.
var errSpinTimeout = errors.New("spin wait: deadline reached")

// checkEvery is how many spins go between two looks at the clock.
const checkEvery = 1 << 14

// alive checks, every so often while spinning, that the peer still runs
// and the deadline has not passed.
func (s *spinSession) alive(deadline time.Time) error {
	if s.m.peerExited() {
		return errors.New("the peer exited")
	}
	if time.Now().After(deadline) {
		return errSpinTimeout
	}
	return nil
}

func (s *spinSession) rtt(msg []byte, ph phase, h *hdrhistogram.Histogram) (int64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := s.mem
	ping, pong := m.ping, m.pong
	pingBuf, pongBuf := m.pingBuf(), m.pongBuf()
	rb := make([]byte, len(msg))
	seq := ping.Load()
	m.cmd.Store(cmdRTT)
	one := func() error {
		seq++
		copy(pingBuf, msg)
		ping.Store(seq)
		for spins := 1; pong.Load() != seq; spins++ {
			if spins%checkEvery == 0 {
				if err := s.alive(ph.deadline); err != nil {
					return err
				}
			}
		}
		copy(rb, pongBuf) // the rest of the message: its word was just read
		return nil
	}
	return timeRoundTrips(one, ph, h)
}

func (s *spinSession) throughput(size int, ph phase) (int64, time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := s.mem
	ring := m.ringBuf()
	mask := uint64(len(ring) - 1)
	sz := uint64(size)
	m.head.Store(0)
	m.t.Store(0)
	m.stop.Store(0)
	m.cmd.Store(cmdTput)
	rb := make([]byte, size)
	var tail, head uint64
	recvOne := func() error {
		for spins := 1; head-tail < sz; spins++ {
			head = m.head.Load()
			if spins%checkEvery == 0 {
				if err := s.alive(ph.deadline); err != nil {
					return err
				}
			}
		}
		off := tail & mask
		n := copy(rb, ring[off:])
		copy(rb[n:], ring)
		tail += sz
		m.t.Store(tail)
		return nil
	}
	n, took, err := countMessages(recvOne, ph)
	m.stop.Store(1)
	return n, took, err
}

func (s *spinSession) quit() error {
	s.mem.cmd.Store(cmdQuit)
	return nil
}

func (s *spinSession) close() error {
	s.mem.unmap()
	return nil
}

// spinPeer is the peer of the spin baseline.
func spinPeer(a peerArgs) error {
	l := newSpinLayout(a.size)
	if a.mem != l.total {
		return fmt.Errorf("mapping of %d bytes, want %d", a.mem, l.total)
	}
	m, err := mapSpin(3, l)
	if err != nil {
		return err
	}
	_ = unix.Close(3)
	runtime.LockOSThread()
	m.ready.Store(1)
	buf := make([]byte, a.size)
	for {
		switch c := m.cmd.Load(); c {
		case cmdRTT:
			spinEcho(m, buf)
		case cmdTput:
			spinSend(m)
			for m.cmd.Load() == cmdTput { // until the parent moves on
				time.Sleep(20 * time.Microsecond)
			}
		case cmdQuit:
			return nil
		case cmdIdle:
			time.Sleep(20 * time.Microsecond)
		default:
			return fmt.Errorf("bad command word %d", c)
		}
	}
}

// spinEcho echoes round trips until the command changes.
func spinEcho(m *spinMem, buf []byte) {
	ping, pong := m.ping, m.pong
	pingBuf, pongBuf := m.pingBuf(), m.pongBuf()
	last := pong.Load()
	for {
		var seq uint64
		for spins := 1; ; spins++ {
			if seq = ping.Load(); seq != last {
				break
			}
			if spins%1024 == 0 && m.cmd.Load() != cmdRTT {
				return
			}
		}
		copy(buf, pingBuf)
		copy(pongBuf, buf)
		pong.Store(seq)
		last = seq
	}
}

// spinSend fills the ring with messages until told to stop.
func spinSend(m *spinMem) {
	ring := m.ringBuf()
	size := uint64(m.l.size)
	capacity := uint64(len(ring))
	mask := capacity - 1
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	var head, tail uint64
	for m.stop.Load() == 0 {
		for spins := 1; head+size-tail > capacity; spins++ {
			tail = m.t.Load()
			if spins%1024 == 0 && m.stop.Load() != 0 {
				return
			}
		}
		off := head & mask
		n := copy(ring[off:], msg)
		copy(ring, msg[n:])
		head += size
		m.head.Store(head)
	}
}
