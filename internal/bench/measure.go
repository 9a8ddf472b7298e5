package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ipcgo/ipc"
)

// The first byte of every message of the measurement protocol says what it
// is. The parent sends ping, start, stop and quit; the peer echoes pings
// and, after start, sends data until it receives stop, then one end.
const (
	tagPing  = 'P'
	tagStart = 'T'
	tagStop  = 'S'
	tagData  = 'D'
	tagEnd   = 'E'
	tagQuit  = 'Q'
)

// errSkip marks the errors that make a measurement skipped rather than
// failed: the transport or size is beyond what this system offers.
var errSkip = errors.New("skipped")

// skipPrefix starts the line a peer prints for an error that means skipped.
const skipPrefix = "skip: "

// isSkip reports whether err means the measurement cannot be made here.
func isSkip(err error) bool {
	return errors.Is(err, errSkip) || errors.Is(err, ipc.ErrUnsupported) || errors.Is(err, ipc.ErrMessageTooLarge)
}

// skipReason words a skip error without the noise of its wrapping.
func skipReason(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "ipc: ")
	return strings.TrimPrefix(s, errSkip.Error()+": ")
}

// phase bounds one measurement: warm-up, then dur or maxN round trips,
// everything before deadline.
type phase struct {
	warm, dur time.Duration
	maxN      int
	deadline  time.Time
}

// session is the parent's side of a process pair.
type session interface {
	// rtt measures round trips of msg, recording each into h, and returns
	// their count.
	rtt(msg []byte, ph phase, h *hdrhistogram.Histogram) (int64, error)
	// throughput has the peer send messages of size bytes and counts those
	// received during ph.dur after the warm-up.
	throughput(size int, ph phase) (msgs int64, window time.Duration, err error)
	// quit tells the peer to exit.
	quit() error
	close() error
}

// setup creates, connects and removes what a process pair communicates
// through.
type setup interface {
	// prepare creates what must exist before the peer starts; it returns
	// the peer's arguments and the files it inherits (descriptor 3 on),
	// which the parent closes once the peer has started.
	prepare() (args []string, files []*os.File, err error)
	// start starts the peer.
	start(cmd *exec.Cmd) error
	// connect returns the parent's session once the peer runs; ctx ends
	// when the peer exits or the pair runs out of time.
	connect(ctx context.Context) (session, error)
	// cleanup removes everything prepare and connect created.
	cleanup()
}

// measurement is one transport at one size.
type measurement struct {
	ctx      context.Context
	opts     *Options
	dir      string
	name     string
	size     int
	seq      int
	owner    int // the pid that names what outlives processes (queues)
	progress func(phase string)
	exited   <-chan struct{} // closed when the peer has exited
}

// peerExited reports whether the peer has exited.
func (m *measurement) peerExited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// connectTimeout bounds the start of a peer and the connection to it.
const connectTimeout = 15 * time.Second

// testPairLimit, when not 0, replaces the pair limit (tests only).
var testPairLimit time.Duration

// pairLimit is the time a process pair may live.
func (m *measurement) pairLimit() time.Duration {
	if testPairLimit != 0 {
		return testPairLimit
	}
	return connectTimeout + 2*(warmup(m.opts.Duration)+m.opts.Duration) + 20*time.Second
}

// isTransient reports whether a failure is due to a resource of the
// system that other programs may be holding for a while: descriptors, or
// the POSIX queues a user may have (RLIMIT_MSGQUEUE, queues_max). Such a
// measurement is tried again.
func isTransient(err error, peerOut string) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOSPC) {
		return true
	}
	for _, s := range []string{"RLIMIT_MSGQUEUE", "queues_max", "too many open files"} {
		if strings.Contains(peerOut, s) || strings.Contains(err.Error(), s) {
			return true
		}
	}
	return false
}

func (m *measurement) run(r *Result) {
	fail := func(err error, peerOut string) {
		r.transient = isTransient(err, peerOut)
		if line := skipLine(peerOut); line != "" && !r.transient {
			r.Skipped = line
			return
		}
		if isSkip(err) && !r.transient {
			r.Skipped = skipReason(err)
			return
		}
		msg := err.Error()
		if peerOut = strings.TrimSpace(peerOut); peerOut != "" {
			msg += "; peer: " + peerOut
		}
		r.Error = msg
	}
	st, err := newSetup(m)
	if err != nil {
		fail(err, "")
		return
	}
	defer st.cleanup()
	args, files, err := st.prepare()
	if err != nil {
		fail(err, "")
		return
	}
	limit := m.pairLimit()
	peerArgs := append([]string{"--transport", m.name, "--size", strconv.Itoa(m.size),
		"--limit", limit.String()}, args...)
	if len(m.opts.CPUs) == 2 {
		peerArgs = append(peerArgs, "--cpu", strconv.Itoa(m.opts.CPUs[1]))
	}
	cmd, err := m.opts.Command(peerArgs...)
	if err != nil {
		closeAll(files)
		fail(err, "")
		return
	}
	out := &capWriter{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = files
	cmd.SysProcAttr = peerAttr()
	err = st.start(cmd)
	closeAll(files)
	if err != nil {
		fail(fmt.Errorf("start peer: %w", err), "")
		return
	}
	exited := make(chan struct{})
	m.exited = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	// Closed once the peer has exited (the deferred calls run in reverse).
	var sess session
	defer func() {
		if sess != nil {
			_ = sess.close()
		}
	}()
	// The watchdog: the pair is killed when it overruns or ctx ends.
	wctx, cancel := context.WithTimeout(m.ctx, limit)
	defer cancel()
	go func() {
		select {
		case <-wctx.Done():
			_ = cmd.Process.Kill()
		case <-exited:
		}
	}()
	defer func() {
		select {
		case <-exited:
		case <-time.After(5 * time.Second): // it was told to quit
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	peerFailed := func(err error) {
		_ = cmd.Process.Kill()
		<-exited
		if m.ctx.Err() == nil && wctx.Err() != nil {
			err = fmt.Errorf("%w (the pair was killed after %v)", err, limit)
		}
		fail(err, out.String())
	}

	cctx, ccancel := context.WithTimeout(wctx, connectTimeout)
	go func() {
		select {
		case <-exited:
			ccancel()
		case <-cctx.Done():
		}
	}()
	sess, err = st.connect(cctx)
	ccancel()
	if err != nil {
		peerFailed(fmt.Errorf("connect: %w", err))
		return
	}

	warm, dur := warmup(m.opts.Duration), m.opts.Duration
	slack := 10*time.Second + time.Duration(m.size/(1<<20))*time.Second
	m.progress("rtt...")
	h := hdrhistogram.New(1, int64(time.Minute), 3)
	msg := make([]byte, m.size)
	for i := range msg {
		msg[i] = byte(i)
	}
	n, err := sess.rtt(msg, phase{warm: warm, dur: dur, maxN: m.opts.MaxRoundTrips,
		deadline: time.Now().Add(warm + dur + slack)}, h)
	if err != nil {
		peerFailed(fmt.Errorf("rtt: %w", err))
		return
	}
	if n == 0 || h.TotalCount() == 0 {
		peerFailed(errors.New("rtt: no round trip measured"))
		return
	}
	r.RoundTrips = n
	r.RTTP50, r.RTTP99, r.RTTP999 = h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9)
	r.RTTMin, r.RTTMax = h.Min(), h.Max()

	m.progress("throughput...")
	msgs, window, err := sess.throughput(m.size, phase{warm: warm, dur: dur,
		deadline: time.Now().Add(warm + dur + slack)})
	if err != nil {
		peerFailed(fmt.Errorf("throughput: %w", err))
		return
	}
	if msgs == 0 || window <= 0 {
		peerFailed(errors.New("throughput: no message received"))
		return
	}
	r.Messages = msgs
	r.ThroughputWindow = window.Seconds()
	r.MsgsPerS = float64(msgs) / window.Seconds()
	r.BytesPerS = r.MsgsPerS * float64(m.size)
	r.MsgsPerS, r.BytesPerS = roundSig(r.MsgsPerS), roundSig(r.BytesPerS)
	if err := sess.quit(); err != nil {
		peerFailed(fmt.Errorf("quit: %w", err))
	}
}

// roundSig rounds to a whole number, enough for rates.
func roundSig(x float64) float64 { return float64(int64(x + 0.5)) }

// skipLine returns the reason of a peer's "skip: " line, if any.
func skipLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if _, after, ok := strings.Cut(l, skipPrefix); ok {
			return strings.TrimSpace(after)
		}
	}
	return ""
}

func closeAll(files []*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// endpoint carries the fixed-size messages of the measurement protocol.
type endpoint interface {
	// send sends b as one message.
	send(b []byte) error
	// recv receives one message into b (whose length is the message size)
	// and returns it.
	recv(b []byte) ([]byte, error)
	// setDeadline bounds later calls, where the endpoint can.
	setDeadline(t time.Time)
	close() error
}

// msgSession is the session over an endpoint carrying messages of size
// bytes.
type msgSession struct {
	ep   endpoint
	size int
}

func (s *msgSession) close() error { return s.ep.close() }

func (s *msgSession) quit() error {
	b := make([]byte, s.size)
	b[0] = tagQuit
	return s.ep.send(b)
}

func checkMsg(got []byte, size int, tags ...byte) error {
	if len(got) != size {
		return fmt.Errorf("received a message of %d bytes, want %d", len(got), size)
	}
	if bytes.IndexByte(tags, got[0]) < 0 {
		return fmt.Errorf("received a message tagged %q, want one of %q", got[0], tags)
	}
	return nil
}

func (s *msgSession) rtt(msg []byte, ph phase, h *hdrhistogram.Histogram) (int64, error) {
	s.ep.setDeadline(ph.deadline)
	msg[0] = tagPing
	rb := make([]byte, len(msg))
	one := func() error {
		if err := s.ep.send(msg); err != nil {
			return err
		}
		got, err := s.ep.recv(rb)
		if err != nil {
			return err
		}
		return checkMsg(got, len(msg), tagPing)
	}
	return timeRoundTrips(one, ph, h)
}

// timeRoundTrips runs one round trip after another: for ph.warm, then for
// ph.dur or ph.maxN round trips, whichever ends first, recording each of
// these into h. It returns their count.
func timeRoundTrips(one func() error, ph phase, h *hdrhistogram.Histogram) (int64, error) {
	ws := time.Now()
	for i := 0; i < ph.maxN && time.Since(ws) < ph.warm; i++ {
		if err := one(); err != nil {
			return 0, err
		}
	}
	base := time.Now()
	var n int64
	for n < int64(ph.maxN) {
		t0 := time.Since(base)
		if err := one(); err != nil {
			return n, err
		}
		t1 := time.Since(base)
		_ = h.RecordValue(int64(t1 - t0))
		n++
		if t1 >= ph.dur {
			break
		}
	}
	return n, nil
}

// countMessages receives messages with recvOne for ph.warm, then counts
// those received during ph.dur; it returns the count and the time they
// took.
func countMessages(recvOne func() error, ph phase) (int64, time.Duration, error) {
	ws := time.Now()
	for time.Since(ws) < ph.warm {
		if err := recvOne(); err != nil {
			return 0, 0, err
		}
	}
	w := newWindow(ph.dur)
	for {
		if err := recvOne(); err != nil {
			return 0, 0, err
		}
		if w.tick() {
			return w.n, w.took, nil
		}
	}
}

// window counts events against a clock read only every so often, so that
// reading the clock costs little next to small messages.
type window struct {
	base       time.Time
	dur        time.Duration
	n, next    int64
	step       int64
	last, took time.Duration
}

func newWindow(dur time.Duration) *window {
	return &window{base: time.Now(), dur: dur, next: 1, step: 1}
}

// tick counts one event and reports whether the window has ended.
func (w *window) tick() bool {
	w.n++
	if w.n < w.next {
		return false
	}
	e := time.Since(w.base)
	w.took = e
	if e >= w.dur {
		return true
	}
	if e-w.last < 50*time.Microsecond && w.step < 4096 {
		w.step *= 2
	}
	w.last = e
	w.next = w.n + w.step
	return false
}

func (s *msgSession) throughput(size int, ph phase) (int64, time.Duration, error) {
	s.ep.setDeadline(ph.deadline)
	ctl := make([]byte, size)
	ctl[0] = tagStart
	if err := s.ep.send(ctl); err != nil {
		return 0, 0, err
	}
	rb := make([]byte, size)
	recvData := func() error {
		got, err := s.ep.recv(rb)
		if err != nil {
			return err
		}
		return checkMsg(got, size, tagData)
	}
	n, took, err := countMessages(recvData, ph)
	if err != nil {
		return 0, 0, err
	}
	ctl[0] = tagStop
	if err := s.ep.send(ctl); err != nil {
		return 0, 0, err
	}
	for { // drain what is in flight, up to the peer's end
		got, err := s.ep.recv(rb)
		if err != nil {
			return 0, 0, err
		}
		if err := checkMsg(got, size, tagData, tagEnd); err != nil {
			return 0, 0, err
		}
		if got[0] == tagEnd {
			return n, took, nil
		}
	}
}

// serve is the peer's side of a msgSession.
func serve(ep endpoint, size int) error {
	buf := make([]byte, size)
	for {
		got, err := ep.recv(buf)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return errors.New("received an empty message")
		}
		switch got[0] {
		case tagPing:
			if err := ep.send(got); err != nil {
				return err
			}
		case tagStart:
			if err := sendStream(ep, size); err != nil {
				return err
			}
		case tagQuit:
			return nil
		default:
			return fmt.Errorf("received a message tagged %q", got[0])
		}
		buf = got[:cap(got)]
	}
}

// sendStream sends data messages until the parent says stop, then an end
// message.
func sendStream(ep endpoint, size int) error {
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		b := make([]byte, size)
		got, err := ep.recv(b)
		if err == nil {
			err = checkMsg(got, size, tagStop)
		}
		stop.Store(true)
		done <- err
	}()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	msg[0] = tagData
	for !stop.Load() {
		if err := ep.send(msg); err != nil {
			return err
		}
	}
	if err := <-done; err != nil {
		return err
	}
	msg[0] = tagEnd
	return ep.send(msg)
}

// connEndpoint is an endpoint over an ipc.Conn.
type connEndpoint struct{ c ipc.Conn }

func (e connEndpoint) send(b []byte) error { return e.c.Send(context.Background(), b) }

func (e connEndpoint) recv(b []byte) ([]byte, error) {
	return e.c.Recv(context.Background(), b[:0])
}

func (e connEndpoint) setDeadline(t time.Time) { _ = e.c.SetDeadline(t) }
func (e connEndpoint) close() error            { return e.c.Close() }

// capWriter keeps the first max bytes written to it.
type capWriter struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// peerGone reports whether err means the other process went away.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
