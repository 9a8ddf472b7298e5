package mqbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ipcgo/ipc/internal/natsserver"
)

// PeerCommand is the hidden subcommand under which Run re-executes its own
// binary as a producer, a consumer or a server. The program's main (or a
// test binary's TestMain) must hand os.Args[2:] to RunPeer when os.Args[1]
// is PeerCommand.
const PeerCommand = "mqbench-peer"

// The roles of a peer process.
const (
	roleServer   = "server"   // the embedded nats-server of a JetStream store
	roleProducer = "producer" // publishes as fast as it can
	roleConsumer = "consumer" // takes and acks until the stream is drained
	roleLatPub   = "latpub"   // publishes time-stamped messages, one at a pace
	roleLatSub   = "latsub"   // waits for them and records their latency
)

// peerResult is the JSON line a producer or consumer prints at its end.
type peerResult struct {
	Count  int64  `json:"count"`             // in the window
	Total  int64  `json:"total"`             // all of them
	LastNs int64  `json:"last_ns,omitempty"` // wall-clock time of the last ack
	P50Ns  int64  `json:"p50_ns,omitempty"`
	P99Ns  int64  `json:"p99_ns,omitempty"`
	MaxNs  int64  `json:"max_ns,omitempty"`
	Error  string `json:"error,omitempty"`
}

type peerArgs struct {
	role, system, addr, group string
	size                      int
	limit, gap, every         time.Duration
	store                     string
	syncAlways                bool
}

// RunPeer is the body of a peer process. It returns the exit code.
func RunPeer(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(PeerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a peerArgs
	fs.StringVar(&a.role, "role", "", "server, producer, consumer, latpub or latsub")
	fs.StringVar(&a.system, "system", "", "system under test")
	fs.StringVar(&a.addr, "addr", "", "store address")
	fs.StringVar(&a.group, "group", "", "consumer group")
	fs.IntVar(&a.size, "size", 64, "message size")
	fs.DurationVar(&a.limit, "limit", time.Minute, "exit after this long, whatever happens")
	fs.DurationVar(&a.gap, "gap", time.Millisecond, "latpub: pause after each publish")
	fs.StringVar(&a.store, "store", "", "server: JetStream store directory")
	fs.BoolVar(&a.syncAlways, "sync-always", false, "server: sync_interval always")
	fs.DurationVar(&a.every, "every", 0, "server: sync interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	time.AfterFunc(a.limit, func() {
		fmt.Fprintf(stderr, "%s %s: time limit %v reached\n", PeerCommand, a.role, a.limit)
		os.Exit(3)
	})
	in := bufio.NewReader(stdin)
	if a.role == roleServer {
		return serverMain(a, in, stdout, stderr)
	}
	if a.size < 8 || a.size > 1<<20 {
		fmt.Fprintf(stderr, "%s: bad size %d\n", PeerCommand, a.size)
		return 2
	}
	ctx := context.Background()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := connect(cctx, a.system, a.addr)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: connect %s: %v\n", PeerCommand, a.role, a.addr, err)
		return 1
	}
	defer c.close()
	var t taker
	if a.role == roleConsumer || a.role == roleLatSub {
		if t, err = c.consumer(ctx, a.group); err != nil {
			fmt.Fprintf(stderr, "%s %s: consumer: %v\n", PeerCommand, a.role, err)
			return 1
		}
		defer t.close()
	}
	fmt.Fprintln(stdout, "ready")
	start, end, err := readGo(in)
	if err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", PeerCommand, a.role, err)
		return 1
	}
	var r peerResult
	switch a.role {
	case roleProducer:
		r = produce(ctx, c, a.size, start, end)
	case roleConsumer:
		r = consume(ctx, t, start, end)
	case roleLatPub:
		r = latencyPublish(ctx, c, a.size, a.gap, end)
	case roleLatSub:
		r = latencyReceive(ctx, t, start, end)
	default:
		fmt.Fprintf(stderr, "%s: unknown role %q\n", PeerCommand, a.role)
		return 2
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// readGo reads the "go START END" line (wall-clock Unix nanoseconds).
func readGo(in *bufio.Reader) (time.Time, time.Time, error) {
	line, err := in.ReadString('\n')
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("no go line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "go" {
		return time.Time{}, time.Time{}, fmt.Errorf("bad go line %q", line)
	}
	s, err1 := strconv.ParseInt(f[1], 10, 64)
	e, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("bad go line %q", line)
	}
	return time.Unix(0, s), time.Unix(0, e), nil
}

func serverMain(a peerArgs, in *bufio.Reader, stdout, stderr io.Writer) int {
	s, err := natsserver.Start(natsserver.Config{StoreDir: a.store, SyncAlways: a.syncAlways, SyncInterval: a.every})
	if err != nil {
		fmt.Fprintf(stderr, "%s server: %v\n", PeerCommand, err)
		return 1
	}
	fmt.Fprintf(stdout, "url %s\n", s.URL())
	_, _ = io.Copy(io.Discard, in) // until the parent closes stdin (or dies)
	s.Stop()
	return 0
}

// produce publishes from now until end; it counts what completes in
// [start, end).
func produce(ctx context.Context, c client, size int, start, end time.Time) peerResult {
	data := make([]byte, size)
	var r peerResult
	for {
		if err := c.publish(ctx, data); err != nil {
			r.Error = err.Error()
			return r
		}
		now := time.Now()
		r.Total++
		if !now.Before(end) {
			return r
		}
		if !now.Before(start) {
			r.Count++
		}
	}
}

// consumeIdle is how long a consumer waits for a delivery before it takes
// the stream as drained.
const consumeIdle = 500 * time.Millisecond

// consume waits until start, then takes and acks until the stream is
// drained or end. LastNs is when the last delivery came (a partial batch
// of JetStream's waits for more until its expiry: that wait is not
// counted); the final flush waits for the acks still on their way.
func consume(ctx context.Context, t taker, start, end time.Time) peerResult {
	time.Sleep(time.Until(start))
	var r peerResult
	for time.Now().Before(end) {
		dl := time.Now().Add(consumeIdle)
		if dl.After(end) {
			dl = end
		}
		tctx, cancel := context.WithDeadline(ctx, dl)
		n, err := t.take(tctx, fetchBatch, func([]byte) { r.LastNs = time.Now().UnixNano() })
		cancel()
		r.Count += int64(n)
		if err != nil {
			if tctx.Err() != nil || errors.Is(err, errNoMessage) || errors.Is(err, context.DeadlineExceeded) {
				break // drained, or the window ended
			}
			r.Error = err.Error()
			break
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := t.flush(fctx); err != nil && r.Error == "" {
		r.Error = err.Error()
	}
	cancel()
	r.Total = r.Count
	return r
}

// latencyPublish publishes a message stamped with its wall-clock send
// time, then pauses gap, until end; then a message stamped 0, the end.
func latencyPublish(ctx context.Context, c client, size int, gap time.Duration, end time.Time) peerResult {
	data := make([]byte, size)
	var r peerResult
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		binary.LittleEndian.PutUint64(data, uint64(now.UnixNano()))
		if err := c.publish(ctx, data); err != nil {
			r.Error = err.Error()
			return r
		}
		r.Total++
		time.Sleep(gap)
	}
	binary.LittleEndian.PutUint64(data, 0)
	if err := c.publish(ctx, data); err != nil {
		r.Error = err.Error()
	}
	r.Count = r.Total
	return r
}

// latencyReceive records the publish→deliver time of each message sent in
// [start, end), until the end message.
func latencyReceive(ctx context.Context, t taker, start, end time.Time) peerResult {
	h := hdrhistogram.New(1, int64(time.Minute), 3)
	var r peerResult
	stop := false
	limit := end.Add(30 * time.Second)
	for !stop && time.Now().Before(limit) {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := t.take(tctx, 1, func(b []byte) {
			now := time.Now().UnixNano()
			ts := int64(binary.LittleEndian.Uint64(b))
			r.Total++
			if ts == 0 {
				stop = true
				return
			}
			if ts >= start.UnixNano() && ts < end.UnixNano() {
				_ = h.RecordValue(max(now-ts, 1))
			}
		})
		cancel()
		if err != nil && tctx.Err() == nil && !errors.Is(err, errNoMessage) && !errors.Is(err, context.DeadlineExceeded) {
			r.Error = err.Error()
			return r
		}
	}
	if !stop {
		r.Error = "the end message did not come"
	}
	r.Count = h.TotalCount()
	r.P50Ns, r.P99Ns, r.MaxNs = h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max()
	return r
}

// proc is a peer process as its parent sees it.
type proc struct {
	role  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	errs  *capWriter
	done  chan struct{}
}

// startPeer starts a peer process in role with args.
func startPeer(command func(args ...string) (*exec.Cmd, error), role string, limit time.Duration, args ...string) (*proc, error) {
	cmd, err := command(append([]string{"--role", role, "--limit", limit.String()}, args...)...)
	if err != nil {
		return nil, err
	}
	p := &proc{role: role, cmd: cmd, lines: make(chan string, 16), errs: &capWriter{max: 4 << 10}, done: make(chan struct{})}
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = p.errs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	// Never outlive the limit, whatever the peer does.
	go func() {
		select {
		case <-p.done:
		case <-time.After(limit + 5*time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	return p, nil
}

// line waits for the next line the peer prints.
func (p *proc) line(ctx context.Context, d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.done
			return "", fmt.Errorf("%s exited (%v): %s", p.role, p.cmd.ProcessState, strings.TrimSpace(p.errs.String()))
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%s: nothing within %v: %s", p.role, d, strings.TrimSpace(p.errs.String()))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// expect waits for a line starting with prefix and returns the rest.
func (p *proc) expect(ctx context.Context, prefix string, d time.Duration) (string, error) {
	l, err := p.line(ctx, d)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(l, prefix)
	if !ok {
		return "", fmt.Errorf("%s said %q, want %q", p.role, l, prefix)
	}
	return rest, nil
}

// result waits for the peer's result line.
func (p *proc) result(ctx context.Context, d time.Duration) (peerResult, error) {
	var r peerResult
	l, err := p.line(ctx, d)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(l), &r); err != nil {
		return r, fmt.Errorf("%s: bad result %q", p.role, l)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%s: %s", p.role, r.Error)
	}
	return r, nil
}

// stop closes the peer's stdin and waits for it to exit, killing it after
// a grace period.
func (p *proc) stop() {
	_ = p.in.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// capWriter keeps the first max bytes written to it.
type capWriter struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
