package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each measurement runs in a fresh pair of processes: a driver (this
// program re-executed in the driver role), which is the measuring end, and
// its peer. A process that has run one measurement keeps runtime state that
// skews the next one (more threads, the runtime monitor's faster pace after
// many blocking system calls): measured on a 2-vCPU VM, the framed pipe's
// 64 B round trip went from 6 µs in a fresh process to 66 µs in one that
// had just run the raw pipe baseline.

// driverRole is the --role of a driver process.
const driverRole = "driver"

// phasePrefix starts the lines a driver writes to stderr to report its
// progress.
const phasePrefix = "phase: "

// driverOut is what a driver prints on stdout: its one result.
type driverOut struct {
	Result
	Transient bool `json:"transient,omitempty"`
}

// pinnedEnv marks a process that re-executed itself pinned to a CPU.
const pinnedEnv = "IPC_BENCH_PINNED"

// driverGrace is how long a driver told to stop (SIGINT) has to stop its
// peer and remove its files before it is killed.
const driverGrace = 10 * time.Second

// runDriver makes measurement m in a driver process and fills r.
func runDriver(m *measurement, r *Result) {
	limit := m.pairLimit() + driverGrace
	args := []string{"--role", driverRole, "--transport", m.name, "--size", strconv.Itoa(m.size),
		"--limit", limit.String(), "--duration", m.opts.Duration.String(),
		"--max-round-trips", strconv.Itoa(m.opts.MaxRoundTrips), "--dir", m.dir,
		"--seq", strconv.Itoa(m.seq), "--owner", strconv.Itoa(m.owner)}
	if len(m.opts.CPUs) == 2 {
		args = append(args, "--cpu", strconv.Itoa(m.opts.CPUs[0]), "--peer-cpu", strconv.Itoa(m.opts.CPUs[1]))
	}
	var out driverOut
	if err := runChild(m.ctx, m.opts.Command, args, limit, m.progress, &out); err != nil {
		r.Error = err.Error()
		return
	}
	if out.Transport != m.name || out.Size != m.size {
		r.Error = fmt.Sprintf("driver: result of %s %d B, want %s %d B", out.Transport, out.Size, m.name, m.size)
		return
	}
	*r = out.Result
	r.transient = out.Transient
}

// runChild runs a driver process (command with args), hands the progress
// lines of its stderr to progress and decodes the JSON it prints on stdout
// into out. The process is told to stop (SIGINT) when ctx ends, and killed
// driverGrace later, or when it outlives limit+driverGrace.
func runChild(ctx context.Context, command func(args ...string) (*exec.Cmd, error), args []string,
	limit time.Duration, progress func(string), out any) error {
	cmd, err := command(args...)
	if err != nil {
		return err
	}
	var stdout bytes.Buffer
	errOut := &capWriter{max: 4 << 10}
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = peerAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start driver: %w", err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), phasePrefix); ok {
				progress(p)
			} else {
				fmt.Fprintln(errOut, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Interrupt) // it stops its peer and removes its files
		case <-done:
			return
		}
		select {
		case <-time.After(driverGrace):
			_ = cmd.Process.Kill()
		case <-done:
		}
	}()
	watchdog := time.AfterFunc(limit+driverGrace, func() { _ = cmd.Process.Kill() })
	<-lines // the stderr pipe is read to its end before Wait closes it
	werr := cmd.Wait()
	watchdog.Stop()
	close(done)

	if jerr := json.Unmarshal(stdout.Bytes(), out); jerr != nil {
		msg := "driver: no result"
		if werr != nil {
			msg = "driver: " + werr.Error()
		}
		if s := strings.TrimSpace(errOut.String()); s != "" {
			msg += "; " + s
		}
		return errors.New(msg)
	}
	return nil
}

// driverMain is the body of a driver process: it makes one measurement
// and prints its result on stdout. SIGINT or SIGTERM stops it cleanly.
func driverMain(a peerArgs, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := Options{Duration: a.duration, MaxRoundTrips: a.maxRoundTrips, Command: selfCommand}
	if a.peerCPU >= 0 {
		opts.CPUs = []int{a.cpu, a.peerCPU}
	}
	m := &measurement{ctx: ctx, opts: &opts, dir: a.dir, name: a.transport, size: a.size, seq: a.seq,
		owner: a.owner, progress: func(p string) { fmt.Fprintf(stderr, "%s%s\n", phasePrefix, p) }}
	r := Result{Transport: a.transport, Size: a.size, Baseline: IsBaseline(a.transport)}
	m.run(&r)
	if err := json.NewEncoder(stdout).Encode(driverOut{Result: r, Transient: r.transient}); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", PeerCommand, err)
		return 1
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

// errPinning is returned for CPUs that cannot be used.
var errPinning = errors.New("bad CPUs")

// checkCPUs validates a pinning: none, or two different CPUs this process
// may run on.
func checkCPUs(cpus []int) error {
	switch {
	case len(cpus) == 0:
		return nil
	case len(cpus) != 2:
		return fmt.Errorf("%w: want two CPUs (the measuring process's and its peer's), got %d", errPinning, len(cpus))
	case cpus[0] == cpus[1]:
		return fmt.Errorf("%w: CPU %d twice: the two processes need CPUs of their own", errPinning, cpus[0])
	}
	allowed, err := AllowedCPUs()
	if err != nil {
		return err
	}
	for _, c := range cpus {
		if !containsInt(allowed, c) {
			return fmt.Errorf("%w: CPU %d is not one this process may run on (%v)", errPinning, c, allowed)
		}
	}
	return nil
}

func containsInt(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// DefaultCPUs returns the first two CPUs this process may run on, or nil
// if it may run on fewer.
func DefaultCPUs() []int {
	allowed, err := AllowedCPUs()
	if err != nil || len(allowed) < 2 {
		return nil
	}
	return allowed[:2]
}
