//go:build linux

package ipc_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/mmap"
)

// How each transport gets junk beneath its framing. A "junk" peer process
// reaches what the transport is made of and writes what is not a valid
// frame there, then waits to be killed:
//
//   - unix, unixpacket, tcp: a raw socket connected to the listener;
//   - fifo: the client-to-server FIFO of a connection it dialled (found
//     through /proc/self/fd, the names being unlinked once connected);
//   - posixmq: a raw mq_timedsend on the client-to-server queue of a
//     connection it dialled (found the same way);
//   - pipe: the inherited pipe descriptor, before ChildConn;
//   - shm: the client-to-server ring of a connection it dialled, through its
//     own mapping of the memfd: a bad record or a bad producer index.

// junkKinds returns the kinds of junk for a transport and the errors each
// may give.
func junkKinds(tp *tport) []junkKind {
	if tp.name == tcpTLS { // the junk reaches TLS, which rejects it before any frame
		return []junkKind{{"not-tls", nil}}
	}
	if tp.name == ipc.SHM {
		return []junkKind{
			{"bad-record-magic", corrupt},
			{"bad-index", corrupt},
			{"bad-flags", corrupt},
			{"huge-length", tooLarge},
			{"random", corrupt},
		}
	}
	kinds := []junkKind{
		{"bad-magic", corrupt},
		{"bad-version", corrupt},
		{"bad-flags", corrupt},
		{"huge-length", tooLarge},
		{"random", corrupt},
	}
	if tp.name == ipc.UnixPacket || tp.name == ipc.PosixMQ {
		kinds = append(kinds, junkKind{"short", corrupt}) // a packet shorter than a header
	}
	return kinds
}

type junkKind struct {
	name string
	want []error
}

var (
	corrupt  = []error{ipc.ErrCorruptFrame}
	tooLarge = []error{ipc.ErrMessageTooLarge, ipc.ErrCorruptFrame}
)

// junkConnect starts a junk peer of the given kind and returns this end of
// the connection it spoils.
func junkConnect(t *testing.T, tp *tport, kind string) (ipc.Conn, *ipctest.Peer) {
	t.Helper()
	cfg := tp.config(0)
	switch tp.name {
	case ipc.Unix, ipc.UnixPacket, ipc.TCP, tcpTLS: // no connection set-up: a raw socket is a client
		l, addr := tp.listen(t, cfg)
		p := ipctest.StartPeer(t, "junk", tp.name, addr, strconv.Itoa(cfg.MaxMessageSize), kind)
		return acceptFrom(t, l, p), p
	}
	return tp.connectPeer(t, cfg, 0, "junk", kind)
}

// junkFrame returns the junk of a kind for framed transports: a frame
// header that is wrong in one way, followed by filler.
func junkFrame(kind string) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(0xA5 ^ i)
	}
	hdr := b[:8]
	hdr[0], hdr[1], hdr[2], hdr[3] = 0xC1, 1, 0, 0
	binary.LittleEndian.PutUint32(hdr[4:], 56) // the rest of b: the frame would be valid
	switch kind {
	case "bad-magic":
		copy(b, "GET / HTTP/1.1\r\n") // a client of another protocol
	case "bad-version":
		hdr[1] = 99
	case "bad-flags":
		hdr[2] = 0x80
	case "huge-length":
		binary.LittleEndian.PutUint32(hdr[4:], 0xFFFFFFF0)
	case "random":
		r := rand.New(rand.NewPCG(4, 5))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[0] = 0x17 // never the magic
	case "short":
		b = b[:3]
	case "not-tls":
		copy(b, "GET / HTTP/1.1\r\n")
	default:
		panic("junk kind " + kind)
	}
	return b
}

// peerJunk connects as transport args[0] at address args[1] would, waits
// for a message (any bytes) from the other end, writes junk of kind
// args[3] beneath the framing, says "junk written" and waits to be killed.
func peerJunk(args []string) int {
	tr, addr, kind := args[0], args[1], args[3]
	a, err := ipc.ParseAddr(addr)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	switch tr {
	case ipc.Unix, ipc.UnixPacket, ipc.TCP, tcpTLS:
		target := a.Path
		if a.Transport == ipc.TCP {
			target = a.Host
		}
		c, err := net.Dial(a.Transport, target)
		if err != nil {
			return ipctest.Fail("raw dial: %v", err)
		}
		defer c.Close()
		if tr != tcpTLS { // a TLS server waits for the client's hello
			if _, err := c.Read(make([]byte, 64)); err != nil {
				return ipctest.Fail("raw read: %v", err)
			}
		}
		if _, err := c.Write(junkFrame(kind)); err != nil {
			return ipctest.Fail("raw write: %v", err)
		}
	case ipc.Pipe:
		rs, ws, _ := strings.Cut(os.Getenv(ipc.PipeEnv), ",")
		rfd, err1 := strconv.Atoi(rs)
		wfd, err2 := strconv.Atoi(ws)
		if err1 != nil || err2 != nil {
			return ipctest.Fail("%s=%q", ipc.PipeEnv, os.Getenv(ipc.PipeEnv))
		}
		r, w := os.NewFile(uintptr(rfd), "pipe:r"), os.NewFile(uintptr(wfd), "pipe:w")
		if _, err := r.Read(make([]byte, 64)); err != nil {
			return ipctest.Fail("read pipe: %v", err)
		}
		if _, err := w.Write(junkFrame(kind)); err != nil {
			return ipctest.Fail("write pipe: %v", err)
		}
	case ipc.FIFO, ipc.PosixMQ, ipc.SHM:
		c, _, err := peerConn(args)
		if err != nil {
			return ipctest.Fail("connect: %v", err)
		}
		defer c.Close()
		if _, err := c.Recv(context.Background(), nil); err != nil {
			return ipctest.Fail("recv: %v", err)
		}
		var fd int
		switch tr {
		case ipc.FIFO:
			fd, err = findFD(func(link string) bool { return strings.Contains(link, ".c2s") })
			if err == nil {
				_, err = unix.Write(fd, junkFrame(kind))
			}
		case ipc.PosixMQ:
			fd, err = findFD(func(link string) bool { return strings.Contains(link, ".c2s") })
			if err == nil {
				err = mqSend(fd, junkFrame(kind))
			}
		case ipc.SHM:
			fd, err = findFD(func(link string) bool { return strings.HasPrefix(link, "/memfd:") })
			if err == nil {
				err = spoilRing(fd, "ipc.c2s", kind)
			}
		}
		if err != nil {
			return ipctest.Fail("junk %s: %v", kind, err)
		}
	default:
		return ipctest.Fail("no junk for %s", tr)
	}
	fmt.Println("junk written")
	time.Sleep(peerLife)
	return 0
}

// findFD returns the one descriptor of this process whose /proc link
// matches.
func findFD(match func(link string) bool) (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, err
	}
	var found []int
	var links []string
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		links = append(links, e.Name()+" -> "+link)
		if match(link) {
			fd, _ := strconv.Atoi(e.Name())
			found = append(found, fd)
		}
	}
	if len(found) != 1 {
		return -1, fmt.Errorf("%d matching descriptors among %q", len(found), links)
	}
	return found[0], nil
}

// mqSend sends msg on queue descriptor fd with priority 0.
func mqSend(fd int, msg []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0, 0, 0)
	if e != 0 {
		return os.NewSyscallError("mq_timedsend", e)
	}
	return nil
}

// spoilRing maps the segment in memfd fd and writes junk of kind into the
// ring called name (PROTOCOL.md: the segment's object directory, the
// ring's header and its records).
func spoilRing(fd int, name, kind string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	seg, err := mmap.Map(fd, int(st.Size))
	if err != nil {
		return err
	}
	objects := int(binary.LittleEndian.Uint32(seg[44:]))
	dirOff := int(binary.LittleEndian.Uint32(seg[52:]))
	var ring []byte
	for i := range objects {
		e := seg[dirOff+64*i : dirOff+64*(i+1)]
		if strings.TrimRight(string(e[24:64]), "\x00") == name && binary.LittleEndian.Uint32(e) == 2 {
			off, size := binary.LittleEndian.Uint64(e[8:]), binary.LittleEndian.Uint64(e[16:])
			ring = seg[off : off+size]
		}
	}
	if ring == nil {
		return fmt.Errorf("no ring %s among %d objects", name, objects)
	}
	const (
		hdrSize = 640 // ring header; the data area follows
		offCap  = 16
		offTail = 128
		offHead = 256
		recData = 1
		recMag  = 0xA5C3
		flHead  = 2
		flMore  = 1
	)
	capacity := binary.LittleEndian.Uint64(ring[offCap:])
	tail := mmap.Uint64(ring, offTail)
	t, h := tail.Load(), mmap.Uint64(ring, offHead).Load()
	if t != h {
		return fmt.Errorf("ring %s not empty: tail %d head %d", name, t, h)
	}
	pos := hdrSize + int(t&(capacity-1))
	if pos+32 > len(ring) {
		return fmt.Errorf("producer index %d too close to the end of the ring", t)
	}
	rec := ring[pos : pos+32]
	header := func(n uint64, typ, flags uint8, magic uint64) {
		binary.LittleEndian.PutUint64(rec, n|uint64(typ)<<32|uint64(flags)<<40|magic<<48)
	}
	switch kind {
	case "bad-record-magic":
		header(16, recData, 0, 0x1234)
	case "bad-index":
		tail.Store(t + capacity + 8) // more than the ring holds
		return nil
	case "bad-flags":
		header(16, recData, 0x80, recMag)
	case "huge-length": // the head record of a multi-record message: its total length first
		header(16, recData, flHead|flMore, recMag)
		binary.LittleEndian.PutUint64(rec[8:], 1<<40)
	case "random":
		r := rand.New(rand.NewPCG(6, 7))
		for i := range rec {
			rec[i] = byte(r.Uint32())
		}
		rec[7] = 0x17 // never the record magic
	default:
		return fmt.Errorf("junk kind %s", kind)
	}
	tail.Store(t + 24) // one record: its header and 16 bytes of payload
	return nil
}

// checkClean fails t if something of the listener at addr is left after
// its Close: files beside a path address (socket, FIFOs of connections),
// or a POSIX queue and its lock and liveness files.
func checkClean(t testing.TB, addr string) {
	t.Helper()
	a, err := ipc.ParseAddr(addr)
	if err != nil {
		t.Error(err)
		return
	}
	switch a.Transport {
	case ipc.Unix, ipc.UnixPacket, ipc.FIFO, ipc.SHM:
		ents, err := os.ReadDir(filepath.Dir(a.Path))
		if err != nil {
			t.Errorf("listing the directory of %s: %v", addr, err)
			return
		}
		for _, e := range ents {
			t.Errorf("%s left %s behind", addr, e.Name())
		}
	case ipc.PosixMQ:
		left, _ := filepath.Glob("/dev/shm/.ipc-mq-" + a.Path[1:] + "*")
		for _, f := range left {
			t.Errorf("%s left %s behind", addr, f)
		}
		name, err := unix.BytePtrFromString(a.Path[1:]) // mq_open takes the name without its '/'
		if err != nil {
			t.Error(err)
			return
		}
		fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)), unix.O_RDONLY, 0, 0, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
			t.Errorf("%s left its queue behind", addr)
		} else if e != unix.ENOENT {
			t.Errorf("mq_open %s after Close: %v", addr, e)
		}
	}
}
