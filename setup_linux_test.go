//go:build linux

package ipc_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc"
	"github.com/ipcgo/ipc/internal/ipctest"
)

// Hostile clients against the set-up of every transport whose listener
// has one: the clients are processes of their own ("hostile" peers) that
// reach the transport beneath ipc.Dial and then stop short.
//
//   - silent: connects (shm, unix, unixpacket: a raw socket; fifo,
//     posixmq: opens the control FIFO or queue) and sends nothing;
//   - half: half a hand-shake. shm: half a hello; unix, unixpacket: half a
//     frame; fifo: the head of a request, and a whole request whose answer
//     FIFO the client filled itself so that the answer cannot be written;
//     posixmq: a short request, and a request for queues that do not exist;
//   - garbage: bytes that are no hand-shake at all.
//
// Only the shm set-up waits for its client (its hello); fifo and posixmq
// answer without waiting, and unix and unixpacket accept at once (their
// set-up, the credential check, needs nothing from the client).

// setupTransports are the transports of the set-up test; waits: the
// listener waits for the client during set-up, so silent clients are
// pending until their deadline; refuses: beyond MaxPendingSetups the
// listener refuses clients (unix and unixpacket leave them in the kernel's
// accept queue).
var setupTransports = []struct {
	name           string
	waits, refuses bool
}{
	{ipc.SHM, true, true},
	{ipc.FIFO, false, true},
	{ipc.PosixMQ, false, true},
	{ipc.UnixPacket, false, false},
	{ipc.Unix, false, false},
}

func init() {
	addPeers(ipctest.Peers{
		"hostile": peerHostile,
		"prompt":  peerPrompt,
	})
}

func TestSetupHostileClients(t *testing.T) {
	for _, st := range setupTransports {
		t.Run(st.name, func(t *testing.T) {
			tp := transportByName(st.name)
			tp.need(t)
			t.Run("prompt", func(t *testing.T) { setupPrompt(t, tp, st.waits) })
			if st.waits {
				t.Run("deadline", func(t *testing.T) { setupDeadline(t, tp) })
			}
			t.Run("flood", func(t *testing.T) { setupFlood(t, tp, st.refuses) })
		})
	}
}

// serve accepts and echoes every connection of l until l closes. When t
// ends the connections accepted are closed (the listener's own cleanup
// closes it).
func serve(t *testing.T, l *ipc.Listener) {
	var mu sync.Mutex
	var conns []ipc.Conn
	stopped := false
	go func() {
		for {
			c, err := l.AcceptConn(context.Background())
			if err != nil {
				return
			}
			mu.Lock()
			if stopped {
				c.Close()
			} else {
				conns = append(conns, c)
			}
			mu.Unlock()
			go func() {
				var buf []byte
				for {
					var err error
					if buf, err = c.Recv(context.Background(), buf); err != nil {
						return
					}
					if c.Send(context.Background(), buf) != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		for _, c := range conns {
			c.Close()
		}
	})
}

// setupPrompt: with silent, half and garbage clients pending (SetupTimeout
// 5 s), a well-behaved client connects and gets an echo well before any
// of them could time out.
func setupPrompt(t *testing.T, tp *tport, waits bool) {
	cfg := tp.config(0)
	cfg.SetupTimeout = 5 * time.Second
	l, addr := tp.listen(t, cfg)
	serve(t, l)
	for _, kind := range []string{"silent", "half", "garbage"} {
		p := ipctest.StartPeer(t, "hostile", tp.name, addr, kind, "3")
		p.Expect(t, "ready", peerTimeout)
	}
	p := ipctest.StartPeer(t, "prompt", tp.name, addr, "0")
	line := p.Line(t, peerTimeout)
	ms, ok := strings.CutPrefix(line, "ok ")
	if !ok {
		t.Fatalf("the well-behaved client: %q", line)
	}
	took, _ := strconv.ParseFloat(ms, 64)
	t.Logf("Dial and one round trip with hostile clients pending: %.1f ms", took)
	if took > 1500 {
		t.Errorf("Dial and one round trip took %.0f ms with hostile clients pending, want well under the 5 s SetupTimeout", took)
	}
	// The hostile clients were there: shm's silent and half ones are still
	// pending, fifo's and posixmq's half ones were dropped.
	if waits {
		if s := l.SetupStats(); s.Pending < 6 {
			t.Errorf("SetupStats %+v after the well-behaved client: want the 6 silent and half clients pending", s)
		}
	} else if tp.name == ipc.FIFO || tp.name == ipc.PosixMQ {
		waitFor(t, "the half requests dropped", func() bool { return l.SetupStats().Failed >= 3 },
			func() string { return fmt.Sprintf("%+v", l.SetupStats()) })
	}
}

// setupDeadline: silent and half clients are dropped at their own
// SetupTimeout, garbage at once, and what they held is released.
func setupDeadline(t *testing.T, tp *tport) {
	const timeout = 400 * time.Millisecond
	cfg := tp.config(0)
	cfg.SetupTimeout = timeout
	base := openFDs(t)
	l, addr := tp.listen(t, cfg)
	serve(t, l)
	const n = 3
	peers := map[string]*ipctest.Peer{}
	for _, kind := range []string{"silent", "half", "garbage"} {
		peers[kind] = ipctest.StartPeer(t, "hostile", tp.name, addr, kind, strconv.Itoa(n))
	}
	for kind, p := range peers {
		p.Expect(t, "ready", peerTimeout)
		for range n {
			line := p.Line(t, peerTimeout)
			ms, ok := strings.CutPrefix(line, "dropped ")
			if !ok {
				t.Fatalf("%s client: %q", kind, line)
			}
			after, _ := strconv.ParseFloat(ms, 64)
			after2 := time.Duration(after * float64(time.Millisecond))
			switch {
			case kind == "garbage" && after2 >= timeout:
				t.Errorf("a garbage client was dropped after %v, want at once", after2)
			case kind != "garbage" && (after2 < timeout || after2 > timeout+3*time.Second):
				t.Errorf("a %s client was dropped after %v, want at its SetupTimeout %v", kind, after2, timeout)
			}
		}
	}
	waitFor(t, "the set-up counts", func() bool {
		s := l.SetupStats()
		return s.TimedOut == 2*n && s.Failed == n && s.Pending == 0 && s.Ready == 0
	}, func() string { return fmt.Sprintf("%+v", l.SetupStats()) })
	waitFor(t, "the listener's descriptors", func() bool { return openFDs(t) <= base+1 },
		func() string {
			return fmt.Sprintf("%d open (%q), %d before Listen (+1 for the listening socket)", openFDs(t), fdLinks(t), base)
		})
}

// setupFlood: far more clients than MaxPendingSetups, not accepted. The
// listener holds a bounded number of descriptors, refuses the rest with
// ErrListenerBusy, and Close releases everything at once.
func setupFlood(t *testing.T, tp *tport, refuses bool) {
	const maxPending, n = 4, 24
	cfg := tp.config(0)
	cfg.SetupTimeout = 5 * time.Second
	cfg.MaxPendingSetups = maxPending
	base := openFDs(t)
	addr := tp.addr(t)
	l, err := ipc.Listen(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := ipctest.StartPeer(t, "hostile", tp.name, addr, "flood", strconv.Itoa(n))
	line := p.Line(t, peerTimeout)
	var ok, busy, other int
	if _, err := fmt.Sscanf(line, "flood ok=%d busy=%d other=%d", &ok, &busy, &other); err != nil {
		t.Fatalf("flood: %q", line)
	}
	t.Logf("%d clients: %d set up or pending, %d refused, %d other; %+v", n, ok, busy, other, l.SetupStats())
	const perConn = 3 // most descriptors one connection holds in the listener (posixmq: two queues, a file)
	if got := openFDs(t); got > base+1+perConn*maxPending+2 {
		t.Errorf("%d descriptors open during the flood, %d before Listen: more than MaxPendingSetups %d connections hold", got, base, maxPending)
	}
	if refuses {
		if ok > maxPending || busy < n-maxPending-other || other > n/4 {
			t.Errorf("of %d clients, %d set up or pending, %d refused, %d failed otherwise; want at most %d not refused",
				n, ok, busy, other, maxPending)
		}
		if s := l.SetupStats(); s.Refused < uint64(busy) || s.Pending+s.Ready > maxPending {
			t.Errorf("SetupStats %+v during the flood", s)
		}
		// A well-behaved client meanwhile gets a clear error at once.
		ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
		start := time.Now()
		c, err := ipc.Dial(ctx, addr, tp.config(0))
		cancel()
		if err == nil {
			c.Close()
		}
		wantIs(t, "Dial while the listener is full", err, ipc.ErrListenerBusy)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the refusal took %v", d)
		}
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with set-ups pending", d)
	}
	checkClean(t, addr)
	waitFor(t, "the listener's descriptors after Close", func() bool { return openFDs(t) <= base },
		func() string { return fmt.Sprintf("%d open (%q), %d before Listen", openFDs(t), fdLinks(t), base) })
}

// openFDs counts this process's open descriptors, but for anonymous pipes
// and pidfds (each peer process started adds its stdout, its stderr and a
// pidfd).
func openFDs(t *testing.T) int {
	t.Helper()
	return len(fdLinks(t))
}

// fdLinks lists this process's open descriptors but for anonymous pipes
// and pidfds.
func fdLinks(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && !strings.HasPrefix(link, "pipe:") && link != "anon_inode:[pidfd]" { // the directory's own is gone
			links = append(links, e.Name()+" -> "+link)
		}
	}
	return links
}

// waitFor waits up to peerTimeout for cond, failing t with state() if it
// does not come.
func waitFor(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(peerTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s after %v", what, state(), peerTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// peerPrompt dials as a well-behaved client (args: transport, address,
// max), has one message echoed and says "ok <ms>", the time both took.
func peerPrompt(args []string) int {
	start := time.Now()
	c, _, err := peerConn(args)
	if err != nil {
		return ipctest.Fail("connect: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	if err := c.Send(ctx, []byte("ping")); err != nil {
		return ipctest.Fail("send: %v", err)
	}
	if b, err := c.Recv(ctx, nil); err != nil || string(b) != "ping" {
		return ipctest.Fail("recv: %q, %v", b, err)
	}
	fmt.Printf("ok %.3f\n", float64(time.Since(start).Microseconds())/1000)
	return 0
}

// peerHostile opens args[3] hostile clients of kind args[2] (see above)
// to transport args[0] at address args[1], says "ready", then, for each
// socket the listener closes, "dropped <ms>" (ms since it began to
// connect), and lives until it is killed. Kind "flood" opens that many
// clients and says "flood ok=N busy=N other=N": for shm, unix and
// unixpacket, silent sockets (busy: an shm "busy" hello came); for fifo
// and posixmq, real Dials that no one accepts.
func peerHostile(args []string) int {
	tr, addr, kind := args[0], args[1], args[2]
	n, _ := strconv.Atoi(args[3])
	a, err := ipc.ParseAddr(addr)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	var out sync.Mutex
	ready := make(chan struct{})
	say := func(format string, v ...any) {
		if format != "ready" {
			<-ready // "ready" comes first
		}
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", v...)
	}
	if kind == "flood" {
		ok, busy, other, err := flood(tr, a, n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood:", err)
		}
		fmt.Printf("flood ok=%d busy=%d other=%d\n", ok, busy, other)
		time.Sleep(peerLife)
		return 0
	}
	for range n {
		var err error
		switch tr {
		case ipc.SHM, ipc.Unix, ipc.UnixPacket:
			err = hostileSocket(tr, a.Path, kind, say)
		case ipc.FIFO:
			err = hostileFIFO(a.Path, kind)
		case ipc.PosixMQ:
			err = hostileMQ(a.Path, kind)
		default:
			err = fmt.Errorf("no hostile client for %s", tr)
		}
		if err != nil {
			return ipctest.Fail("%s %s: %v", tr, kind, err)
		}
	}
	say("ready")
	close(ready)
	time.Sleep(peerLife)
	return 0
}

// socketNet is the socket type beneath transport tr.
func socketNet(tr string) string {
	if tr == ipc.UnixPacket {
		return "unixpacket"
	}
	return "unix"
}

// hostileSocket connects to the socket at path, sends what kind says and
// reports when the listener closes the socket.
func hostileSocket(tr, path, kind string, say func(string, ...any)) error {
	// Measured from before the connect: the listener's deadline runs from
	// its accept, later.
	start := time.Now()
	c, err := net.Dial(socketNet(tr), path)
	if err != nil {
		return err
	}
	var msg []byte
	switch kind {
	case "half": // a frame header announcing a 32-byte hello, and 10 of its bytes
		msg = make([]byte, 8+10)
		msg[0], msg[1] = 0xC1, 1
		binary.LittleEndian.PutUint32(msg[4:], 32)
		copy(msg[8:], "IPCS")
	case "garbage":
		msg = make([]byte, 64)
		_, _ = rand.Read(msg)
		msg[0] = 0x17 // never the frame magic
	}
	if len(msg) > 0 {
		if _, err := c.Write(msg); err != nil {
			return err
		}
	}
	go func() {
		defer c.Close()
		b := make([]byte, 64)
		for {
			if _, err := c.Read(b); err != nil {
				say("dropped %.3f", float64(time.Since(start).Microseconds())/1000)
				return
			}
		}
	}()
	return nil
}

// fifoRequest is a connection request for id (PROTOCOL.md, "FIFO
// transport"; the posixmq one differs in its magic).
func fifoRequest(magic string, id []byte) []byte {
	req := make([]byte, 64)
	copy(req, magic)
	req[4], req[5] = 1, 1
	copy(req[8:], id)
	binary.LittleEndian.PutUint32(req[24:], uint32(os.Getpid()))
	return req
}

// hostileFIFO writes to the control FIFO at path what kind says. Its
// descriptors stay open: the process holds them until it is killed.
func hostileFIFO(path, kind string) error {
	ctl, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	switch kind {
	case "half":
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		// The head of a request, and no more.
		if _, err := unix.Write(ctl, fifoRequest("IPCF", id)[:32]); err != nil {
			return err
		}
		// A request whose pair exists, the answer FIFO full.
		_, _ = rand.Read(id)
		base := path + "." + hex.EncodeToString(id)
		for _, dir := range []string{".c2s", ".s2c"} {
			if err := unix.Mkfifo(base+dir, 0o600); err != nil {
				return err
			}
			fd, err := unix.Open(base+dir, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			for dir == ".s2c" {
				if _, err := unix.Write(fd, make([]byte, 4096)); err != nil {
					break // full
				}
			}
		}
		if _, err := unix.Write(ctl, fifoRequest("IPCF", id)); err != nil {
			return err
		}
	case "garbage":
		b := make([]byte, 100)
		_, _ = rand.Read(b)
		b[0] = 0x17
		if _, err := unix.Write(ctl, b); err != nil {
			return err
		}
	}
	return nil
}

// mqOpen opens the POSIX queue name (with its leading '/').
func mqOpen(name string, flags int) (int, error) {
	p, err := unix.BytePtrFromString(name[1:])
	if err != nil {
		return -1, err
	}
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags), 0, 0, 0, 0)
	if e != 0 {
		return -1, os.NewSyscallError("mq_open", e)
	}
	return int(fd), nil
}

// hostileMQ sends to the control queue name what kind says.
func hostileMQ(name, kind string) error {
	ctl, err := mqOpen(name, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	switch kind {
	case "half":
		if err := mqSend(ctl, fifoRequest("IPCQ", id)[:32]); err != nil {
			return err
		}
		// A whole request for queues that were never made.
		return mqSend(ctl, fifoRequest("IPCQ", id))
	case "garbage":
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		b[0] = 0x17
		return mqSend(ctl, b)
	}
	return nil
}

// held keeps the clients of a flood open (and out of the garbage
// collector's finalizers) until the process is killed.
var held []any

// flood opens n clients (see peerHostile) and counts them: set up (or,
// for sockets, left pending), refused as busy, failed otherwise (err: the
// first such failure).
func flood(tr string, a ipc.Addr, n int) (ok, busy, other int, err error) {
	count := func(e error) {
		switch {
		case e == nil:
			ok++
		case errors.Is(e, ipc.ErrListenerBusy):
			busy++
		default:
			other++
			if err == nil {
				err = e
			}
		}
	}
	if tr == ipc.FIFO || tr == ipc.PosixMQ {
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
			c, e := ipc.Dial(ctx, a.String(), configFor(tr, 0))
			cancel()
			if e == nil {
				held = append(held, c)
			}
			count(e)
		}
		return ok, busy, other, err
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, e := net.Dial(socketNet(tr), a.Path)
		if e != nil {
			count(e)
			continue
		}
		conns = append(conns, c)
		held = append(held, c)
	}
	results := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			// A busy listener answers at once: a frame holding a 32-byte
			// hello whose status (byte 7) is 4. Else nothing comes.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 8+32)
			_, e := io.ReadFull(c, b)
			switch {
			case e == nil && string(b[8:12]) == "IPCS" && b[8+7] == 4:
				results <- ipc.ErrListenerBusy
			case e != nil && errors.Is(e, os.ErrDeadlineExceeded):
				results <- nil // pending
			case e != nil:
				results <- e
			default:
				results <- fmt.Errorf("unexpected answer %x", b)
			}
		}()
	}
	for range conns {
		count(<-results)
	}
	return ok, busy, other, err
}

// TestSetupConfig: the set-up fields default, and out-of-range values are
// ErrBadConfig before anything is created.
func TestSetupConfig(t *testing.T) {
	d := ipc.DefaultConfig()
	if d.SetupTimeout != 5*time.Second || d.MaxPendingSetups != 64 {
		t.Errorf("defaults: SetupTimeout %v, MaxPendingSetups %d", d.SetupTimeout, d.MaxPendingSetups)
	}
	tp := transportByName(ipc.SHM)
	for _, cfg := range []*ipc.Config{
		{SetupTimeout: -time.Second},
		{MaxPendingSetups: -1},
		{MaxPendingSetups: 1<<16 + 1},
	} {
		addr := tp.addr(t)
		l, err := ipc.Listen(addr, cfg)
		if err == nil {
			l.Close()
		}
		wantIs(t, fmt.Sprintf("Listen with %+v", *cfg), err, ipc.ErrBadConfig)
		checkClean(t, addr)
	}
}
