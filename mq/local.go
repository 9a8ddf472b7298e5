package mq

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// The local backend keeps everything durable in files under the queue
// directory and shares, through one named shm segment per directory, what
// the processes that have it open coordinate with: a robust mutex per
// stream (appends and group changes), a sync mutex per stream (group
// commit), and words (written and synced log positions, a futex word that
// wakes waiting consumers, change counters). Each process keeps a view of
// a stream in memory (index, dedupe table, group states) and brings it up
// to date from the files, under the stream's mutex, whenever the words
// say another process changed something. The layout is in PROTOCOL.md,
// "mq local backend".
const (
	segSlots    = 256
	segObjects  = 1024
	segSize     = 2 << 20
	windowSize  = 512 // unsettled messages a group considers at once
	posFileBits = 44
)

// localHook, when set (tests only), is called at each named step of a
// write, so that a test can park a process there and kill it.
var localHook func(step string)

func hook(step string) {
	if localHook != nil {
		localHook(step)
	}
}

// pos packs a log file number and an offset in it; positions compare in
// log order.
func mkpos(file uint32, off int64) uint64 { return uint64(file)<<posFileBits | uint64(off) }
func posFile(p uint64) uint32             { return uint32(p >> posFileBits) }
func posOff(p uint64) int64               { return int64(p & (1<<posFileBits - 1)) }

type localBackend struct {
	dir     string
	cfg     Config
	seg     *shm.Segment
	segName string
	segInc  uint64 // incarnation of the segment: owners recorded under another are dead
	dirMu   *procsync.Mutex
	users   *os.File // shared flock while open

	mu      sync.Mutex
	views   map[string]*lstream
	cids    map[uint32]bool // open consumers of this handle
	nextCID uint32
	closed  bool
}

func randU64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	v := binary.LittleEndian.Uint64(b[:])
	if v == 0 {
		v = 1
	}
	return v
}

// flock takes a flock on f, polling while ctx allows.
func flock(ctx context.Context, f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// openLocal opens the local backend on directory dir.
func openLocal(ctx context.Context, dir string, c Config) (backend, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, c.DirPerm); err != nil {
		return nil, err
	}
	for _, d := range []string{"streams", "trash", "quarantine"} {
		if err := os.Mkdir(filepath.Join(dir, d), c.DirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	dirID, err := queueID(dir, c)
	if err != nil {
		return nil, err
	}
	b := &localBackend{dir: dir, cfg: c, views: map[string]*lstream{}, cids: map[uint32]bool{},
		segName: fmt.Sprintf("ipcmq-%016x", dirID)}
	lk, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, c.FilePerm)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	if err := flock(ctx, lk, unix.LOCK_EX); err != nil {
		return nil, err
	}
	b.users, err = os.OpenFile(filepath.Join(dir, "users"), os.O_RDWR|os.O_CREATE, c.FilePerm)
	if err != nil {
		return nil, err
	}
	if err := b.attach(); err != nil {
		b.users.Close()
		return nil, err
	}
	return b, nil
}

// attach attaches to the directory's segment, creating it afresh when no
// other handle has the directory open (a segment left by processes that
// all died is stale: the files are the truth). Called holding the lock
// file exclusively.
func (b *localBackend) attach() error {
	fd := int(b.users.Fd())
	first := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil
	var err error
	if first {
		_ = shm.Unlink(b.segName)
		b.seg, err = shm.Create(b.segName, segSize, &shm.Config{Perm: b.cfg.FilePerm, Slots: segSlots, Objects: segObjects})
	} else {
		b.seg, err = shm.Open(b.segName)
	}
	if err != nil {
		return err
	}
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		b.seg.Close()
		return fmt.Errorf("flock %s: %w", b.users.Name(), err)
	}
	r, _, err := b.seg.AllocObject("mq.info", shm.KindData, 64, func(m []byte) {
		binary.LittleEndian.PutUint64(m, randU64())
	})
	if err == nil {
		b.segInc = r.Uint64(0).Load()
		b.dirMu, err = procsync.NewMutex(b.seg, "mq.dir", nil)
	}
	if err != nil {
		b.seg.Close()
		return err
	}
	return nil
}

// queueID reads (or creates) the MQ file that marks dir as a queue and
// returns the directory's random id.
func queueID(dir string, c Config) (uint64, error) {
	p := filepath.Join(dir, "MQ")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		tmp, err := os.CreateTemp(filepath.Join(dir, "trash"), "MQ-")
		if err != nil {
			return 0, err
		}
		_ = tmp.Chmod(c.FilePerm)
		_, err = tmp.Write(fileHeader{Kind: kindQueue, A: randU64()}.encode())
		if err == nil {
			err = tmp.Sync()
		}
		tmp.Close()
		if err == nil {
			err = os.Link(tmp.Name(), p) // never replaces another opener's file
		}
		os.Remove(tmp.Name())
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return 0, err
		}
		syncDir(dir)
		b, err = os.ReadFile(p)
		if err != nil {
			return 0, err
		}
	} else if err != nil {
		return 0, err
	}
	h, err := validateFileHeader(b, p, kindQueue)
	if err != nil {
		return 0, err
	}
	return h.A, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func (b *localBackend) close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	ss := make([]*lstream, 0, len(b.views))
	for _, s := range b.views {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.shutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lk, err := os.OpenFile(filepath.Join(b.dir, "lock"), os.O_RDWR|os.O_CREATE, b.cfg.FilePerm)
	if err == nil {
		defer lk.Close()
		err = flock(ctx, lk, unix.LOCK_EX)
	}
	b.seg.Close()
	fd := int(b.users.Fd())
	_ = unix.Flock(fd, unix.LOCK_UN)
	if err == nil && unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = shm.Unlink(b.segName) // the last handle: the segment goes
	}
	b.users.Close()
	return err
}

func (b *localBackend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// alive reports whether the consumer o still holds its deliveries.
func (b *localBackend) alive(o owner, cache map[uint32]bool) bool {
	if o.Seg != b.segInc || o.Tok == 0 {
		return false
	}
	if o.Tok == b.seg.Token() {
		b.mu.Lock()
		ok := b.cids[o.CID]
		b.mu.Unlock()
		return ok
	}
	if v, ok := cache[o.Tok]; ok {
		return v
	}
	v := b.seg.TokenAlive(o.Tok)
	if cache != nil {
		cache[o.Tok] = v
	}
	return v
}

func nameHash(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return hex.EncodeToString(h.Sum(nil))
}

// stream returns this handle's view of the stream called name (not yet
// loaded: the first lock loads it).
func (b *localBackend) stream(name string) (*lstream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	if s := b.views[name]; s != nil {
		return s, nil
	}
	h := nameHash(name)
	pmu, err := procsync.NewMutex(b.seg, "mq.m."+h, nil)
	if err != nil {
		return nil, err
	}
	smu, err := procsync.NewMutex(b.seg, "mq.s."+h, nil)
	if err != nil {
		return nil, err
	}
	w, err := b.seg.Alloc("mq.w."+h, 64)
	if err != nil {
		return nil, err
	}
	s := &lstream{b: b, name: name, dir: filepath.Join(b.dir, "streams", name), pmu: pmu, smu: smu,
		inc: w.Uint64(wInc), written: w.Uint64(wWritten), synced: w.Uint64(wSynced),
		notify: w.Uint32(wNotify), waiters: w.Uint32(wWaiters), metaGen: w.Uint64(wMetaGen), jgen: w.Uint64(wJGen)}
	b.views[name] = s
	return s, nil
}

// Offsets of a stream's words (PROTOCOL.md).
const (
	wInc     = 0  // stream id the words describe; 0: not set up since the segment was made
	wWritten = 8  // log position up to which records are whole
	wSynced  = 16 // log position up to which the log is fsynced
	wNotify  = 24 // futex word: bumped on every change a consumer may wait for
	wWaiters = 28 // consumers sleeping on wNotify
	wMetaGen = 32 // bumped when a group is created or deleted
	wJGen    = 40 // bumped on every journal append
)

var errClosed = net.ErrClosed

func (b *localBackend) createStream(ctx context.Context, c StreamConfig) (StreamInfo, error) {
	if err := b.dirMu.Lock(ctx); err != nil && !errors.Is(err, procsync.ErrOwnerDead) {
		return StreamInfo{}, err
	} else if err != nil {
		_ = b.dirMu.MarkConsistent() // stream creation is a rename: nothing half-done to repair
	}
	defer b.dirMu.Unlock()
	p := filepath.Join(b.dir, "streams", c.Name)
	var have streamFile
	if _, err := readJSONFile(filepath.Join(p, "stream"), kindStream, &have); err == nil {
		if have != toStreamFile(c) {
			return StreamInfo{}, fmt.Errorf("%w: stream %s", ErrExists, c.Name)
		}
		return b.streamInfo(ctx, c.Name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return StreamInfo{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Join(b.dir, "trash"), "new-")
	if err != nil {
		return StreamInfo{}, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, b.cfg.DirPerm); err != nil {
		return StreamInfo{}, err
	}
	id := randU64()
	cf, err := encodeJSONFile(fileHeader{Kind: kindStream, A: id}, toStreamFile(c))
	if err == nil {
		err = writeFileSync(filepath.Join(tmp, "stream"), cf, b.cfg.FilePerm)
	}
	if err == nil {
		err = writeFileSync(filepath.Join(tmp, logName(1)), fileHeader{Kind: kindLog, A: 1, B: 1}.encode(), b.cfg.FilePerm)
	}
	if err == nil {
		syncDir(tmp)
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return StreamInfo{}, err
	}
	syncDir(filepath.Dir(p))
	return b.streamInfo(ctx, c.Name)
}

func writeFileSync(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func logName(n uint32) string { return fmt.Sprintf("%010d.log", n) }

func (b *localBackend) deleteStream(ctx context.Context, name string) error {
	if err := b.dirMu.Lock(ctx); err != nil && !errors.Is(err, procsync.ErrOwnerDead) {
		return err
	} else if err != nil {
		_ = b.dirMu.MarkConsistent()
	}
	defer b.dirMu.Unlock()
	s, err := b.stream(name)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	trash := filepath.Join(b.dir, "trash", fmt.Sprintf("del-%s-%016x", name, randU64()))
	err = os.Rename(s.dir, trash)
	if err == nil {
		s.inc.Store(0)
		s.written.Store(0)
		s.synced.Store(0)
		s.metaGen.Add(1)
		s.dropView()
	}
	s.unlock()
	s.wake()
	if err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

func (b *localBackend) streamInfo(ctx context.Context, name string) (StreamInfo, error) {
	return locked(ctx, b, name, func(s *lstream) (StreamInfo, error) { return s.info(), nil })
}

func (b *localBackend) streams(ctx context.Context) ([]StreamInfo, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "streams"))
	if err != nil {
		return nil, err
	}
	var out []StreamInfo
	for _, e := range ents {
		if !e.IsDir() || validName("stream", e.Name()) != nil {
			continue
		}
		si, err := b.streamInfo(ctx, e.Name())
		if errors.Is(err, ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out, nil
}

func (b *localBackend) publish(ctx context.Context, stream string, data []byte, opts *PublishOptions) (PubAck, error) {
	s, err := b.stream(stream)
	if err != nil {
		return PubAck{}, err
	}
	return s.publish(ctx, data, opts)
}

// locked runs f on the stream's view, holding its lock.
func locked[T any](ctx context.Context, b *localBackend, stream string, f func(s *lstream) (T, error)) (T, error) {
	var zero T
	s, err := b.stream(stream)
	if err != nil {
		return zero, err
	}
	if err := s.lock(ctx); err != nil {
		return zero, err
	}
	defer s.unlock()
	return f(s)
}

func (b *localBackend) read(ctx context.Context, stream string, seq uint64, n int) ([]StoredMessage, error) {
	return locked(ctx, b, stream, func(s *lstream) ([]StoredMessage, error) { return s.readMsgs(seq, n) })
}

func (b *localBackend) deleteMsg(ctx context.Context, stream string, seq uint64) error {
	_, err := locked(ctx, b, stream, func(s *lstream) (struct{}, error) { return struct{}{}, s.deleteMsg(seq) })
	return err
}

func (b *localBackend) createGroup(ctx context.Context, stream string, c GroupConfig) (GroupInfo, error) {
	if len(c.Backoff) == 0 {
		c.Backoff = nil
	}
	if c.DeadLetter != "" { // before the stream's lock: stream creation takes the directory's
		if _, err := b.streamInfo(ctx, stream); err != nil {
			return GroupInfo{}, err
		}
		if _, err := b.streamInfo(ctx, c.DeadLetter); errors.Is(err, ErrStreamNotFound) {
			dl, _ := StreamConfig{Name: c.DeadLetter}.withDefaults()
			if _, err := b.createStream(ctx, dl); err != nil && !errors.Is(err, ErrExists) {
				return GroupInfo{}, err
			}
		} else if err != nil {
			return GroupInfo{}, err
		}
	}
	return locked(ctx, b, stream, func(s *lstream) (GroupInfo, error) { return s.createGroup(c) })
}

func (b *localBackend) deleteGroup(ctx context.Context, stream, group string) error {
	_, err := locked(ctx, b, stream, func(s *lstream) (struct{}, error) { return struct{}{}, s.deleteGroup(group) })
	return err
}

func (b *localBackend) groupInfo(ctx context.Context, stream, group string) (GroupInfo, error) {
	return locked(ctx, b, stream, func(s *lstream) (GroupInfo, error) {
		g := s.groups[group]
		if g == nil {
			return GroupInfo{}, fmt.Errorf("%w: %s/%s", ErrGroupNotFound, stream, group)
		}
		return s.groupInfo(g), nil
	})
}

func (b *localBackend) consumer(ctx context.Context, stream, group string) (consumerBackend, error) {
	if _, err := b.groupInfo(ctx, stream, group); err != nil {
		return nil, err
	}
	s, err := b.stream(stream)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.nextCID++
	cid := b.nextCID
	b.cids[cid] = true
	b.mu.Unlock()
	return &lconsumer{s: s, group: group, me: owner{Seg: b.segInc, Tok: b.seg.Token(), CID: cid}}, nil
}

// keyHash names a key in the index; a collision only orders two keys
// together.
func keyHash(k string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(k))
	return h.Sum64() | 1
}
