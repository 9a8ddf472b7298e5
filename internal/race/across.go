package race

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/dsync"
)

// The across run (Options.Across): the workers share one counter, the key
// "counter" of a JetStream key-value bucket made for the run
// ("ipc_race_<pid>_<n>", deleted when the run ends), and coordinate through
// package dsync in the namespace of the same name:
//
//	none       Get, then Put of the value + 1: loses updates
//	mutex      under a dsync.Mutex, a fenced write (below)
//	semaphore  under a dsync.Semaphore of one permit, a fenced write
//
// The fenced write is the resource's side of fencing: it reads the counter
// (its value records the newest token that wrote it), refuses a token
// older than that one, and writes count+1 with the new token by an update
// conditional on the revision it read, so that no other write lands
// between the check and the write. A refused write is not retried (it is
// reported): under a working lock none is ever refused.
//
// With Kill, the mutex mode runs until the kills are done and each kill
// exercises the recovery: the supervisor pauses (SIGSTOP) the process that
// holds the lock, waits until another worker has taken the lock over once
// the lease's TTL passed and written the counter, resumes the paused
// holder, which goes on with its update as a paused process would (it
// cannot know it was paused), and sees its late write refused by the fence;
// then it kills the holder with SIGKILL and starts a replacement.
var acrossModes = []string{"none", "mutex", "semaphore"}

// AcrossModes are the modes of an across run, in the order they run.
func AcrossModes() []string { return slices.Clone(acrossModes) }

const (
	counterKey = "counter"
	goKey      = "go"
	stopKey    = "stop"
	lockName   = "race"
)

// counterValue is the value of the counter key (PROTOCOL.md, "ipc race
// --across counter"): magic, count, newest token, the increments of each
// worker, CRC-32C.
type counterValue struct {
	Count uint64
	Fence uint64
	Done  map[uint32]uint64
}

const counterMagic = "IRAC"

func (v counterValue) encode() []byte {
	b := make([]byte, 0, 24+12*len(v.Done)+4)
	b = append(b, counterMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v.Done)))
	b = binary.LittleEndian.AppendUint64(b, v.Count)
	b = binary.LittleEndian.AppendUint64(b, v.Fence)
	for _, w := range slices.Sorted(mapKeys(v.Done)) {
		b = binary.LittleEndian.AppendUint32(b, w)
		b = binary.LittleEndian.AppendUint64(b, v.Done[w])
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func mapKeys(m map[uint32]uint64) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func decodeCounter(b []byte) (counterValue, error) {
	v := counterValue{Done: map[uint32]uint64{}}
	if len(b) < 28 || string(b[:4]) != counterMagic {
		return v, fmt.Errorf("counter: not a counter value (%d bytes)", len(b))
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if len(b) != 28+12*n {
		return v, fmt.Errorf("counter: %d bytes for %d workers", len(b), n)
	}
	if crc32.Checksum(b[:len(b)-4], crcTable) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return v, errors.New("counter: checksum mismatch")
	}
	v.Count = binary.LittleEndian.Uint64(b[8:])
	v.Fence = binary.LittleEndian.Uint64(b[16:])
	for i := range n {
		p := 24 + 12*i
		v.Done[binary.LittleEndian.Uint32(b[p:])] = binary.LittleEndian.Uint64(b[p+4:])
	}
	return v, nil
}

// sum is the sum of the workers' increments.
func (v counterValue) sum() uint64 {
	var s uint64
	for _, d := range v.Done {
		s += d
	}
	return s
}

// acrossRun is the supervisor's side of an across run.
type acrossRun struct {
	*supervisor
	nc     *nats.Conn
	kv     jetstream.KeyValue
	bucket string // also the dsync namespace
	next   int    // next worker index
}

func (s *supervisor) runAcross() (res *Result, err error) {
	opts := s.opts
	nc, err := nats.Connect(opts.Across, nats.Timeout(10*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("across %s: %w", opts.Across, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	bucket := "ipc_race_" + strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(seq.Add(1), 10)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Storage: jetstream.MemoryStorage})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("across: create bucket %s: %w", bucket, err)
	}
	defer func() {
		s.killAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, b := range []string{bucket, dsync.BucketPrefix + bucket} {
			if derr := js.DeleteKeyValue(ctx, b); derr != nil && !errors.Is(derr, jetstream.ErrBucketNotFound) && err == nil {
				err = fmt.Errorf("across: delete bucket %s: %w", b, derr)
			}
		}
	}()
	a := &acrossRun{supervisor: s, nc: nc, kv: kv, bucket: bucket}
	if opts.Kill > 0 {
		return a.runKill()
	}
	modes := opts.Modes
	if modes == nil {
		modes = acrossModes
	}
	res = &Result{Procs: opts.Procs, Iters: opts.Iters, Expected: uint64(opts.Procs) * uint64(opts.Iters), Across: opts.Across}
	return res.runModes(modes, a.runMode)
}

func (a *acrossRun) reset() (uint64, error) {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	for _, k := range []string{goKey, stopKey} {
		if err := a.kv.Purge(ctx, k); err != nil {
			return 0, err
		}
	}
	return a.kv.Put(ctx, counterKey, counterValue{}.encode())
}

func (a *acrossRun) startWorker(mode string, iters int) (*proc, error) {
	i := a.next
	a.next++
	return a.start(i, "--mode", "across-"+mode, "--nats", a.opts.Across, "--bucket", a.bucket,
		"--index", strconv.Itoa(i), "--iters", strconv.Itoa(iters), "--ttl", a.opts.TTL.String())
}

// waitLines waits until every worker in ps has printed a line starting
// with prefix.
func (a *acrossRun) waitLines(ps []*proc, prefix string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := 0
		for _, p := range ps {
			if hasLine(p.out.Bytes(), prefix) {
				n++
			}
		}
		if n == len(ps) {
			return nil
		}
		if err := a.failed(); err != nil {
			return err
		}
		if err := a.ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d workers said %q within %v", n, len(ps), prefix, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasLine(out []byte, prefix string) bool {
	for l := range bytes.Lines(out) {
		if bytes.HasPrefix(l, []byte(prefix)) {
			return true
		}
	}
	return false
}

// lineValue returns the integer after prefix in the last line that starts
// with prefix.
func lineValue(out []byte, prefix string) (int64, bool) {
	var v int64
	found := false
	for l := range bytes.Lines(out) {
		if rest, ok := bytes.CutPrefix(l, []byte(prefix)); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(rest)), 10, 64); err == nil {
				v, found = n, true
			}
		}
	}
	return v, found
}

func (a *acrossRun) runMode(mode string) (ModeResult, error) {
	if _, err := a.reset(); err != nil {
		return ModeResult{}, err
	}
	var ps []*proc
	for range a.opts.Procs {
		p, err := a.startWorker(mode, a.opts.Iters)
		if err != nil {
			return ModeResult{}, err
		}
		ps = append(ps, p)
	}
	if err := a.waitLines(ps, "ready", 60*time.Second); err != nil {
		return ModeResult{}, err
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	_, err := a.kv.Put(ctx, goKey, []byte("go"))
	cancel()
	if err != nil {
		return ModeResult{}, err
	}
	start := time.Now()
	if err := a.waitExit(ps, 0); err != nil {
		return ModeResult{}, err
	}
	wall := time.Since(start)
	v, err := a.counter()
	if err != nil {
		return ModeResult{}, err
	}
	mr := ModeResult{Mode: mode, Final: v.Count}
	if total := float64(a.opts.Procs) * float64(a.opts.Iters); total > 0 {
		mr.NsPerOp = float64(wall.Nanoseconds()) / total
	}
	for _, p := range ps {
		n, _ := lineValue(p.out.Bytes(), "refused ")
		mr.Refused += n
	}
	return mr, nil
}

func (a *acrossRun) counter() (counterValue, error) {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	en, err := a.kv.Get(ctx, counterKey)
	if err != nil {
		return counterValue{}, err
	}
	return decodeCounter(en.Value())
}

// holder returns the worker holding the run's mutex and its token.
func (a *acrossRun) holder() (*proc, uint64, error) {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	hs, err := dsync.Inspect(ctx, a.opts.Across, a.bucket)
	if err != nil {
		return nil, 0, err
	}
	for _, h := range hs {
		if h.Kind != dsync.KindMutex || h.Name != lockName {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(h.Holder, WorkerCommand+"/"))
		if err != nil {
			return nil, 0, fmt.Errorf("holder %q: not a worker", h.Holder)
		}
		return a.byPid(pid), h.Token, nil
	}
	return nil, 0, nil
}

func (a *acrossRun) runKill() (*Result, error) {
	if _, err := a.reset(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	for range a.opts.Procs {
		if _, err := a.startWorker("mutex", 0); err != nil {
			return nil, err
		}
	}
	if err := a.waitLines(a.procs, "ready", 60*time.Second); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	_, err := a.kv.Put(ctx, goKey, []byte("go"))
	cancel()
	if err != nil {
		return nil, err
	}
	det := &KillDetail{}
	kr := &KillResult{}
	lastHit := time.Now()
	for kr.Kills < a.opts.Kill {
		if err := a.ctx.Err(); err != nil {
			return nil, err
		}
		if err := a.failed(); err != nil {
			return nil, err
		}
		if time.Since(lastHit) > 60*time.Second {
			return nil, fmt.Errorf("no lock holder could be paused for 60 s (%d kills done)", kr.Kills)
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		victim, token, err := a.holder()
		if err != nil {
			return nil, err
		}
		if victim == nil {
			continue
		}
		if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		paused := time.Now()
		det.Attempts++
		// Still the holder once stopped? (It may have unlocked meanwhile.)
		again, token2, err := a.holder()
		if err != nil {
			return nil, err
		}
		if again != victim || token2 != token {
			det.Misses++
			_ = victim.cmd.Process.Signal(syscall.SIGCONT)
			if det.Attempts >= maxAttempts(a.opts.Kill) {
				return nil, fmt.Errorf("only %d of %d pauses hit a lock holder in %d attempts", kr.Kills, a.opts.Kill, det.Attempts)
			}
			continue
		}
		kr.Kills++
		lastHit = time.Now()
		// The lock is taken over once the lease expires on the server: wait
		// for a write with a newer token.
		deadline := time.Now().Add(a.opts.TTL + a.opts.KillWait)
		var v counterValue
		for {
			if v, err = a.counter(); err != nil {
				return nil, err
			}
			if v.Fence > token {
				break
			}
			if err := a.failed(); err != nil {
				return nil, err
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("pause %d (token %d): no newer holder wrote within %v", kr.Kills, token, a.opts.TTL+a.opts.KillWait)
			}
			time.Sleep(5 * time.Millisecond)
		}
		kr.Recovered++
		det.DetectMs = append(det.DetectMs, round(float64(time.Since(paused).Microseconds())/1e3, 3))
		victimDone := v.Done[uint32(victim.index)]
		// Resume it: its late write must be refused (or it had written
		// before the pause and only its unlock fails).
		if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			return nil, err
		}
		tok := strconv.FormatUint(token, 10)
		deadline = time.Now().Add(10 * time.Second)
		for {
			out := victim.out.Bytes()
			if hasLine(out, "late "+tok+" refused") {
				kr.LateRefused++
				break
			}
			if hasLine(out, "late "+tok+" unlock") {
				kr.LateAfterWrite++
				break
			}
			if victim.exitedNow() {
				return nil, victim.failure()
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("paused holder (token %d) said nothing within 10 s of its resumption", token)
			}
			time.Sleep(2 * time.Millisecond)
		}
		victim.killed = true
		_ = victim.cmd.Process.Kill()
		<-victim.done
		if v, err = a.counter(); err != nil {
			return nil, err
		}
		if v.Done[uint32(victim.index)] != victimDone {
			kr.StaleAccepted++
		}
		if _, err := a.startWorker("mutex", 0); err != nil {
			return nil, err
		}
	}
	ctx, cancel = context.WithTimeout(a.ctx, 10*time.Second)
	_, err = a.kv.Put(ctx, stopKey, []byte("stop"))
	cancel()
	if err != nil {
		return nil, err
	}
	if err := a.waitExit(a.procs, 30*time.Second); err != nil {
		return nil, fmt.Errorf("stopping the workers: %w", err)
	}
	det.Wall = time.Since(t0)
	det.Workers = a.next
	v, err := a.counter()
	if err != nil {
		return nil, err
	}
	kr.Final, kr.Expected = v.Count, v.sum()
	if len(det.DetectMs) > 0 {
		sorted := slices.Sorted(slices.Values(det.DetectMs))
		kr.DetectMsP50 = round(sorted[(len(sorted)-1)/2], 2)
		kr.DetectMsMax = round(sorted[len(sorted)-1], 2)
	}
	mr := ModeResult{Mode: "mutex", Final: v.Count, Lost: int64(kr.Expected) - int64(v.Count)}
	if v.Count > 0 {
		mr.NsPerOp = round(float64(det.Wall.Nanoseconds())/float64(v.Count), 1)
	}
	return &Result{Procs: a.opts.Procs, Expected: kr.Expected, Modes: []ModeResult{mr}, Kill: kr, KillDetail: det, Across: a.opts.Across}, nil
}

// runAcrossWorker is the body of an across worker: mode is "none",
// "mutex" or "semaphore"; iters 0 (kill mode) runs until the stop key is
// written.
func runAcrossWorker(url, bucket, mode string, index, iters int, ttl time.Duration) error {
	if !slices.Contains(acrossModes, mode) {
		return fmt.Errorf("unknown across mode %q", mode)
	}
	ctx := context.Background()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := dsync.Open(octx, url, &dsync.Config{Namespace: bucket, TTL: ttl, ID: WorkerCommand + "/" + strconv.Itoa(os.Getpid())})
	if err != nil {
		return err
	}
	defer c.Close()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(octx, bucket)
	if err != nil {
		return err
	}
	var lock func() (*dsync.Lease, error)
	switch mode {
	case "mutex":
		m, err := c.Mutex(lockName)
		if err != nil {
			return err
		}
		lock = func() (*dsync.Lease, error) { return m.Lock(ctx) }
	case "semaphore":
		s, err := c.Semaphore(lockName, 1)
		if err != nil {
			return err
		}
		lock = func() (*dsync.Lease, error) { return s.Acquire(ctx) }
	}
	watch := func(key string) (<-chan struct{}, func(), error) {
		w, err := kv.Watch(octx, key, jetstream.IgnoreDeletes())
		if err != nil {
			return nil, nil, err
		}
		ch := make(chan struct{})
		go func() {
			for en := range w.Updates() {
				if en != nil {
					close(ch)
					return
				}
			}
		}()
		return ch, func() { _ = w.Stop() }, nil
	}
	goCh, stopGo, err := watch(goKey)
	if err != nil {
		return err
	}
	defer stopGo()
	stopCh, stopStop, err := watch(stopKey)
	if err != nil {
		return err
	}
	defer stopStop()
	fmt.Println("ready")
	select {
	case <-goCh:
	case <-time.After(time.Minute):
		return errors.New("no start signal within a minute")
	}
	w := uint32(index)
	var refused int64
	for i := 0; iters == 0 || i < iters; i++ {
		if iters == 0 {
			select {
			case <-stopCh:
				return nil
			default:
			}
		}
		if lock == nil {
			en, err := kv.Get(ctx, counterKey)
			if err != nil {
				return err
			}
			v, err := decodeCounter(en.Value())
			if err != nil {
				return err
			}
			v.Count++
			v.Done[w]++
			if _, err := kv.Put(ctx, counterKey, v.encode()); err != nil {
				return err
			}
			continue
		}
		l, err := lock()
		if err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		// No check of the lease here: a process paused right after such a
		// check could not act on it either. The fence decides.
		if err := fencedIncrement(ctx, kv, l.Token(), w); err != nil {
			if !errors.Is(err, dsync.ErrStaleToken) && !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSeq(err) {
				return err
			}
			refused++
			fmt.Printf("late %d refused: %v\n", l.Token(), err)
		}
		if err := l.Release(ctx); err != nil {
			if iters > 0 {
				return fmt.Errorf("unlock: %w", err)
			}
			fmt.Printf("late %d unlock: %v\n", l.Token(), err)
		}
	}
	fmt.Printf("refused %d\n", refused)
	return nil
}

// fencedIncrement adds one to the counter for worker w holding token: it
// refuses a token older than the newest that wrote, and writes only if the
// counter is still the revision it read.
func fencedIncrement(ctx context.Context, kv jetstream.KeyValue, token uint64, w uint32) error {
	en, err := kv.Get(ctx, counterKey)
	if err != nil {
		return err
	}
	v, err := decodeCounter(en.Value())
	if err != nil {
		return err
	}
	if token < v.Fence {
		return fmt.Errorf("%w: token %d, newest %d", dsync.ErrStaleToken, token, v.Fence)
	}
	v.Count++
	v.Fence = token
	v.Done[w]++
	_, err = kv.Update(ctx, counterKey, v.encode(), en.Revision())
	return err
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
