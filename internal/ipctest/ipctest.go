// Package ipctest runs multi-process tests: the test binary re-executes
// itself as a named peer (as os/exec's own tests do), every peer is killed
// and reaped when its test ends, and every segment a test names is unlinked
// then, also when the test fails.
package ipctest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ipcgo/ipc/shm"
)

const peerEnv = "IPCTEST_PEER"

// Peers maps a peer name to its body. The body gets the arguments given to
// Command and returns the process's exit code.
type Peers map[string]func(args []string) int

// Main is the body of a package's TestMain. In a peer process it runs the
// named peer and exits; otherwise it runs the tests and then fails if any
// goroutine leaked.
func Main(m *testing.M, peers Peers) {
	if name := os.Getenv(peerEnv); name != "" {
		f, ok := peers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "ipctest: no peer %q\n", name)
			os.Exit(2)
		}
		os.Exit(f(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// IsPeer reports whether this process runs as a peer.
func IsPeer() bool { return os.Getenv(peerEnv) != "" }

// Command returns a command that runs this test binary as the named peer.
// Adjust it (SysProcAttr, ExtraFiles, Env) and hand it to Start.
func Command(name string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), peerEnv+"="+name)
	return cmd
}

// Peer is a running peer process.
type Peer struct {
	Cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   strings.Builder // stderr and unread stdout, shown when the test fails
	done  chan struct{}
	err   error
}

// Start starts cmd as a peer of t. Its stdout is read line by line (see
// Line); its stderr is kept and logged if t fails. When t ends the peer is
// killed (if still running) and reaped.
func Start(t testing.TB, cmd *exec.Cmd) *Peer {
	t.Helper()
	return StartFunc(t, cmd, cmd.Start)
}

// StartFunc is Start for a command that start starts, a call that runs
// cmd.Start itself (such as one that wires the command up first).
func StartFunc(t testing.TB, cmd *exec.Cmd, start func() error) *Peer {
	t.Helper()
	p := &Peer{Cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.out.Write(b)
	})
	if err := start(); err != nil {
		t.Fatalf("start peer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
				p.mu.Lock()
				p.out.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("peer %d not reaped 10 s after SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("peer %d output:\n%s", cmd.Process.Pid, p.out.String())
			p.mu.Unlock()
		}
	})
	return p
}

// StartPeer starts this test binary as the named peer (Command, then Start).
func StartPeer(t testing.TB, name string, args ...string) *Peer {
	t.Helper()
	return Start(t, Command(name, args...))
}

// Pid returns the peer's process id.
func (p *Peer) Pid() int { return p.Cmd.Process.Pid }

// Line returns the peer's next line of output, failing t if none comes
// within d or the peer exits first.
func (p *Peer) Line(t testing.TB, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("peer %d exited before printing a line", p.Pid())
		}
		return l
	case <-time.After(d):
		t.Fatalf("peer %d printed nothing for %v", p.Pid(), d)
	}
	return ""
}

// Expect reads the next line and fails t unless it equals want.
func (p *Peer) Expect(t testing.TB, want string, d time.Duration) {
	t.Helper()
	if got := p.Line(t, d); got != want {
		t.Fatalf("peer %d said %q, want %q", p.Pid(), got, want)
	}
}

// Kill sends SIGKILL to the peer.
func (p *Peer) Kill() { _ = p.Cmd.Process.Signal(syscall.SIGKILL) }

// Wait waits up to d for the peer to exit and returns its exit error (nil
// for status 0). It fails t if the peer is still running after d.
func (p *Peer) Wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("peer %d still running after %v", p.Pid(), d)
	}
	return nil
}

// Done is closed when the peer has exited and been reaped.
func (p *Peer) Done() <-chan struct{} { return p.done }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

var seq atomic.Int64

// SegName returns a segment name unique to this process and test, and
// unlinks that segment when t ends, whatever the outcome.
func SegName(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("ipctest-%d-%d", os.Getpid(), seq.Add(1))
	t.Cleanup(func() { _ = shm.Unlink(name) })
	return name
}

// CreateSegment creates a named segment of size data bytes for t (nil cfg:
// defaults), closed and unlinked when t ends.
func CreateSegment(t testing.TB, size int, cfg *shm.Config) *shm.Segment {
	t.Helper()
	name := SegName(t)
	seg, err := shm.Create(name, size, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close() })
	return seg
}

// Fail makes a peer report an error on stderr and return exit code 1.
func Fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return 1
}
