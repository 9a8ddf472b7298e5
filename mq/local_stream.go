package mq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
	"github.com/ipcgo/ipc/procsync"
)

// logFile is one log file of a stream's view.
type logFile struct {
	no   uint32
	path string
	f    *os.File
	size int64 // bytes of whole records (and the header)
	live int   // messages in it not yet removed
}

// msgIdx is the index entry of one sequence.
type msgIdx struct {
	file uint32
	size uint32
	off  int64
	pub  int64
	nb   int64
	keyh uint64 // 0: no key
	prio uint8
	gone bool // removed (deleted, trimmed by a limit, or acked by every group of a work queue)
}

type dedupeEnt struct {
	seq uint64
	pub int64
}

type dedupeKey struct {
	id  string
	seq uint64
	pub int64
}

// lstream is one handle's view of a stream, and the shared words and
// mutexes of the stream.
type lstream struct {
	b        *localBackend
	name     string
	dir      string
	pmu, smu *procsync.Mutex

	inc, written, synced, metaGen, jgen *atomic.Uint64
	notify, waiters                     *atomic.Uint32

	mu       sync.Mutex // guards the view; taken before pmu
	loaded   bool
	id       uint64
	cfg      StreamConfig
	files    []*logFile
	retired  []*os.File // files removed from the view, closed at shutdown
	readPos  uint64
	seenMeta uint64
	seenJ    uint64
	base     uint64 // sequence of idx[0]
	idx      []msgIdx
	lastSeq  uint64
	firstSeq uint64 // lowest sequence not trimmed
	liveMsgs uint64
	liveByte uint64
	dedupe   map[string]dedupeEnt
	dedupeQ  []dedupeKey
	groups   map[string]*lgroup
	damaged  []error // records skipped as damaged (reported by Check too)

	syncMu    sync.Mutex
	syncTimer *time.Timer
	stopped   bool
}

func (s *lstream) lock(ctx context.Context) error {
	s.mu.Lock()
	err := s.pmu.Lock(ctx)
	if errors.Is(err, procsync.ErrOwnerDead) {
		// The previous holder was killed mid-change: cut what it left half
		// written, then go on.
		rerr := s.repair()
		_ = s.pmu.MarkConsistent()
		if rerr != nil {
			s.unlock()
			return rerr
		}
	} else if err != nil {
		s.mu.Unlock()
		return err
	}
	if err := s.catchUp(); err != nil {
		s.unlock()
		return err
	}
	return nil
}

func (s *lstream) unlock() {
	_ = s.pmu.Unlock()
	s.mu.Unlock()
}

// wake wakes the consumers waiting on the stream, in every process.
func (s *lstream) wake() {
	s.notify.Add(1)
	if s.waiters.Load() > 0 {
		futex.Wake(s.notify, math.MaxInt32)
	}
}

func (s *lstream) dropView() {
	for _, f := range s.files {
		s.retired = append(s.retired, f.f)
	}
	for _, g := range s.groups {
		if g.f != nil {
			s.retired = append(s.retired, g.f)
		}
	}
	s.files, s.groups, s.idx, s.dedupe, s.dedupeQ = nil, nil, nil, nil, nil
	s.loaded = false
	s.base, s.lastSeq, s.firstSeq, s.liveMsgs, s.liveByte = 0, 0, 0, 0, 0
}

// shutdown syncs what a SyncEvery timer still owes and closes the files.
func (s *lstream) shutdown() {
	s.syncMu.Lock()
	s.stopped = true
	pending := s.syncTimer != nil && s.syncTimer.Stop()
	s.syncTimer = nil
	s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if pending && len(s.files) > 0 {
		_ = s.files[len(s.files)-1].f.Sync()
	}
	s.dropView()
	for _, f := range s.retired {
		f.Close()
	}
	s.retired = nil
}

// catchUp brings the view up to date with what other handles wrote.
// Called holding the lock.
func (s *lstream) catchUp() error {
	inc := s.inc.Load()
	if inc == 0 || !s.loaded || inc != s.id {
		s.dropView()
		return s.load(inc)
	}
	if w := s.written.Load(); w != s.readPos {
		if err := s.readLog(w); err != nil {
			return err
		}
	}
	if m := s.metaGen.Load(); m != s.seenMeta {
		if err := s.loadGroups(); err != nil {
			return err
		}
	} else if j := s.jgen.Load(); j != s.seenJ {
		s.seenJ = j
		for _, g := range s.groups {
			if err := s.readJournal(g); err != nil {
				return err
			}
		}
	}
	s.trimAge(time.Now().UnixNano())
	return nil
}

// logFiles lists the log files of the stream, in order.
func listLogs(dir string) ([]uint32, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".log") {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(n, ".log"), 10, 32)
		if err == nil && v > 0 {
			out = append(out, uint32(v))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// quarantine keeps a copy of a damaged file in the queue's quarantine
// directory, for inspection.
func (s *lstream) quarantine(path string, b []byte) {
	q := filepath.Join(s.b.dir, "quarantine", fmt.Sprintf("%s-%s-%d", s.name, filepath.Base(path), time.Now().UnixNano()))
	_ = os.WriteFile(q, b, s.b.cfg.FilePerm)
}

// load builds the view from the files. inc is the stream id the shared
// words hold; 0 means no live handle has set them up since the segment was
// made, and this one does: it scans the log to its end, truncating a torn
// tail, and publishes the positions.
func (s *lstream) load(inc uint64) error {
	var sf streamFile
	h, err := readJSONFile(filepath.Join(s.dir, "stream"), kindStream, &sf)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrStreamNotFound, s.name)
	}
	if err != nil {
		return err
	}
	setup := inc != h.A
	s.id, s.cfg = h.A, sf.config()
	s.dedupe = map[string]dedupeEnt{}
	nos, err := listLogs(s.dir)
	if err != nil {
		return err
	}
	w := s.written.Load()
	for i, no := range nos {
		if !setup && no > posFile(w) {
			break
		}
		path := filepath.Join(s.dir, logName(no))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(f)
		if err != nil {
			f.Close()
			return err
		}
		last := i == len(nos)-1
		if _, err := validateFileHeader(b, path, kindLog); err != nil {
			f.Close()
			if setup && last && len(b) < fileHeaderSize {
				os.Remove(path) // a rotation cut short
				continue
			}
			if setup { // set aside: its messages are lost, the others are served
				s.quarantine(path, b)
				_ = os.Rename(path, path+".damaged")
			}
			continue
		}
		limit := int64(len(b))
		if !setup && no == posFile(w) {
			limit = min(limit, posOff(w))
		}
		lf := &logFile{no: no, path: path, f: f, size: fileHeaderSize}
		s.files = append(s.files, lf)
		limit = max(limit, fileHeaderSize)
		nd := len(s.damaged)
		end, err := s.applyLog(lf, b[fileHeaderSize:limit], fileHeaderSize)
		lf.size = end
		if setup && len(s.damaged) > nd && err == nil {
			s.quarantine(path, b) // damaged records stepped over: keep a copy
		}
		if setup && end < int64(len(b)) {
			// A torn tail is cut; damage that cannot be stepped over is
			// copied to quarantine/ and the records after it are
			// skipped (cut when it is the file appends go to).
			if err != nil {
				s.quarantine(path, b)
			}
			if last {
				if terr := f.Truncate(end); terr != nil {
					return terr
				}
			}
		}
	}
	if len(s.files) == 0 {
		lf, err := s.newLogFile(1, s.lastSeq+1)
		if err != nil {
			return err
		}
		s.files = append(s.files, lf)
	}
	cur := s.files[len(s.files)-1]
	s.readPos = mkpos(cur.no, cur.size)
	if setup {
		s.written.Store(s.readPos)
		s.synced.Store(0)
		s.inc.Store(s.id)
	}
	s.loaded = true
	return s.loadGroups()
}

func (s *lstream) newLogFile(no uint32, first uint64) (*logFile, error) {
	path := filepath.Join(s.dir, logName(no))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, s.b.cfg.FilePerm)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(fileHeader{Kind: kindLog, A: first, B: no}.encode(), 0); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &logFile{no: no, path: path, f: f, size: fileHeaderSize}, nil
}

// applyLog applies the records in b (the bytes of lf from offset off on)
// to the view and returns where the last whole one ends. A damaged record
// stops it: a torn tail with a nil error, corruption with a *CorruptError.
func (s *lstream) applyLog(lf *logFile, b []byte, off int64) (int64, error) {
	for len(b) > 0 {
		body, n, err := DecodeRecord(b, off)
		if err != nil {
			if tornTail(b) {
				return off, nil
			}
			err.(*CorruptError).File = lf.path
			if skip := skippable(b); skip > 0 {
				// A damaged record between whole ones: its message is
				// lost, the records after it are served.
				s.damaged = append(s.damaged, err)
				off += int64(skip)
				b = b[skip:]
				continue
			}
			return off, err
		}
		if err := s.applyRecord(lf, body, off, n); err != nil {
			return off, &CorruptError{File: lf.path, Offset: off, Reason: err.Error()}
		}
		off += int64(n)
		b = b[n:]
	}
	return off, nil
}

// skippable returns the size of the damaged record at the start of b when
// its length field is intact, as the whole record that follows it (or the
// end of b) shows; 0 when the damage cannot be stepped over.
func skippable(b []byte) int {
	if len(b) < RecordHeaderSize {
		return 0
	}
	n := RecordHeaderSize + int(binary.LittleEndian.Uint32(b))
	if n > len(b) || binary.LittleEndian.Uint32(b) > MaxRecordBody {
		return 0
	}
	if n == len(b) {
		return n
	}
	if _, _, err := DecodeRecord(b[n:], 0); err != nil {
		return 0
	}
	return n
}

func (s *lstream) applyRecord(lf *logFile, body []byte, off int64, n int) error {
	if len(body) == 0 {
		return errors.New("empty record")
	}
	switch body[0] {
	case recMsg:
		m, err := decodeMsg(body, false)
		if err != nil {
			return err
		}
		if m.Seq <= s.lastSeq {
			return fmt.Errorf("sequence %d after %d", m.Seq, s.lastSeq)
		}
		s.addMsg(lf, m, off, n)
	case recDelete:
		d := decoder{b: body[1:]}
		seq := d.u64()
		if d.bad {
			return errors.New("delete record malformed")
		}
		s.remove(seq)
	default:
		return fmt.Errorf("unknown record type %q", body[0])
	}
	return nil
}

func (s *lstream) addMsg(lf *logFile, m *logMsg, off int64, n int) {
	if len(s.idx) == 0 {
		s.base = m.Seq
		s.firstSeq = max(s.firstSeq, m.Seq)
	}
	for s.base+uint64(len(s.idx)) < m.Seq {
		s.idx = append(s.idx, msgIdx{gone: true})
	}
	e := msgIdx{file: lf.no, size: uint32(n), off: off, pub: m.Published, nb: m.NotBefore, prio: m.Priority}
	if m.Key != "" {
		e.keyh = keyHash(m.Key)
	}
	s.idx = append(s.idx, e)
	s.lastSeq = m.Seq
	if s.firstSeq == 0 {
		s.firstSeq = m.Seq
	}
	lf.live++
	s.liveMsgs++
	s.liveByte += uint64(n)
	if m.ID != "" {
		s.dedupe[m.ID] = dedupeEnt{seq: m.Seq, pub: m.Published}
		s.dedupeQ = append(s.dedupeQ, dedupeKey{m.ID, m.Seq, m.Published})
	}
	s.enforceLimits()
}

func (s *lstream) entry(seq uint64) *msgIdx {
	if seq < s.base || seq >= s.base+uint64(len(s.idx)) || seq < s.firstSeq {
		return nil
	}
	return &s.idx[seq-s.base]
}

// live reports whether seq is a stored message.
func (s *lstream) live(seq uint64) bool {
	e := s.entry(seq)
	return e != nil && !e.gone
}

// remove marks seq removed.
func (s *lstream) remove(seq uint64) {
	e := s.entry(seq)
	if e == nil || e.gone {
		return
	}
	e.gone = true
	s.liveMsgs--
	s.liveByte -= uint64(e.size)
	if lf := s.fileByNo(e.file); lf != nil {
		lf.live--
	}
}

func (s *lstream) enforceLimits() {
	c := s.cfg
	for s.firstSeq <= s.lastSeq && ((c.MaxMsgs > 0 && s.liveMsgs > uint64(c.MaxMsgs)) ||
		(c.MaxBytes > 0 && s.liveByte > uint64(c.MaxBytes))) {
		s.remove(s.firstSeq)
		s.firstSeq++
	}
}

func (s *lstream) trimAge(now int64) {
	if s.cfg.MaxAge <= 0 {
		return
	}
	limit := now - int64(s.cfg.MaxAge)
	for s.firstSeq <= s.lastSeq {
		e := s.entry(s.firstSeq)
		if e == nil || e.pub >= limit {
			break
		}
		s.remove(s.firstSeq)
		s.firstSeq++
	}
}

func (s *lstream) fileByNo(no uint32) *logFile {
	i := sort.Search(len(s.files), func(i int) bool { return s.files[i].no >= no })
	if i < len(s.files) && s.files[i].no == no {
		return s.files[i]
	}
	return nil
}

// gc deletes the log files whose messages are all removed (never the
// current one) and drops the index below the first live sequence.
func (s *lstream) gc() {
	for len(s.files) > 1 && s.files[0].live <= 0 {
		lf := s.files[0]
		hook("gc-unlink")
		if err := os.Remove(lf.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
		s.retired = append(s.retired, lf.f)
		s.files = s.files[1:]
	}
	for s.firstSeq <= s.lastSeq && s.entry(s.firstSeq) != nil && s.entry(s.firstSeq).gone {
		s.firstSeq++
	}
	if d := s.firstSeq - s.base; d > 4096 && d > uint64(len(s.idx))/2 {
		s.idx = append([]msgIdx(nil), s.idx[d:]...)
		s.base = s.firstSeq
	}
}

// readLog reads what other handles appended up to position w.
func (s *lstream) readLog(w uint64) error {
	for s.readPos < w {
		cur := s.files[len(s.files)-1]
		end := posOff(w)
		if posFile(w) != cur.no {
			st, err := cur.f.Stat()
			if err != nil {
				return err
			}
			end = st.Size()
		}
		if end > cur.size {
			b := make([]byte, end-cur.size)
			if _, err := cur.f.ReadAt(b, cur.size); err != nil {
				return fmt.Errorf("read %s: %w", cur.path, err)
			}
			e, err := s.applyLog(cur, b, cur.size)
			cur.size = e
			if err != nil {
				return err
			}
		}
		s.readPos = mkpos(cur.no, cur.size)
		if posFile(w) == cur.no {
			break
		}
		nos, err := listLogs(s.dir)
		if err != nil {
			return err
		}
		next := uint32(0)
		for _, no := range nos {
			if no > cur.no && no <= posFile(w) {
				next = no
				break
			}
		}
		if next == 0 {
			return &CorruptError{File: filepath.Join(s.dir, logName(posFile(w))), Reason: "log file missing"}
		}
		path := filepath.Join(s.dir, logName(next))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		hb := make([]byte, fileHeaderSize)
		if _, err := f.ReadAt(hb, 0); err != nil {
			f.Close()
			return fmt.Errorf("read %s: %w", path, err)
		}
		if _, err := validateFileHeader(hb, path, kindLog); err != nil {
			f.Close()
			return err
		}
		s.files = append(s.files, &logFile{no: next, path: path, f: f, size: fileHeaderSize})
		s.readPos = mkpos(next, fileHeaderSize)
	}
	s.gc()
	return nil
}

// repair runs when the lock was taken over from a holder that died: it
// cuts a torn record at the end of the log and of every journal (what the
// holder was writing), and adopts whole records it wrote but did not
// publish in the shared words (its publish never returned).
func (s *lstream) repair() error {
	w := s.written.Load()
	if w != 0 {
		nos, err := listLogs(s.dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, no := range nos {
			if no < posFile(w) {
				continue
			}
			path := filepath.Join(s.dir, logName(no))
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			start := posOff(w)
			if no > posFile(w) {
				if _, err := validateFileHeader(b, path, kindLog); err != nil {
					os.Remove(path) // a rotation cut short
					break
				}
				start = fileHeaderSize
			}
			if start > int64(len(b)) {
				start = int64(len(b))
			}
			_, n, _ := ScanRecords(b[start:], path)
			end := start + n
			if end < int64(len(b)) {
				if err := os.Truncate(path, end); err != nil {
					return err
				}
			}
			w = mkpos(no, end)
		}
		s.written.Store(w)
	}
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".grp") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil || len(b) < fileHeaderSize {
			continue
		}
		_, n, _ := ScanRecords(b[fileHeaderSize:], path)
		if end := fileHeaderSize + n; end < int64(len(b)) {
			if err := os.Truncate(path, end); err != nil {
				return err
			}
		}
	}
	s.jgen.Add(1)
	s.metaGen.Add(1)
	s.notify.Add(1)
	return nil
}

// casMax raises w to v unless it is already at or past it.
func casMax(w *atomic.Uint64, v uint64) {
	for {
		old := w.Load()
		if old >= v || w.CompareAndSwap(old, v) {
			return
		}
	}
}

// appendLog appends rec to the log, rotating first if the current file is
// full, and returns the file, the record's offset and the position after
// it. Called holding the lock.
func (s *lstream) appendLog(rec []byte) (*logFile, int64, uint64, error) {
	cur := s.files[len(s.files)-1]
	if cur.size+int64(len(rec)) > s.cfg.SegmentBytes && cur.size > fileHeaderSize {
		if err := s.rotate(cur); err != nil {
			return nil, 0, 0, err
		}
		cur = s.files[len(s.files)-1]
	}
	off := cur.size
	done := 0
	if localHook != nil && len(rec) > 1 {
		done = len(rec) / 2
		if _, err := cur.f.WriteAt(rec[:done], off); err != nil {
			_ = cur.f.Truncate(off)
			return nil, 0, 0, fmt.Errorf("append to %s: %w", cur.path, err)
		}
		hook("append-torn")
	}
	if _, err := cur.f.WriteAt(rec[done:], off+int64(done)); err != nil {
		_ = cur.f.Truncate(off) // nothing half written stays behind
		return nil, 0, 0, fmt.Errorf("append to %s: %w", cur.path, err)
	}
	hook("append-written")
	cur.size += int64(len(rec))
	p := mkpos(cur.no, cur.size)
	s.written.Store(p)
	s.readPos = p
	return cur, off, p, nil
}

func (s *lstream) rotate(cur *logFile) error {
	if s.cfg.Sync.every >= 0 {
		if err := cur.f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", cur.path, err)
		}
	}
	lf, err := s.newLogFile(cur.no+1, s.lastSeq+1)
	if err != nil {
		return err
	}
	hook("rotate")
	if s.cfg.Sync.every == 0 {
		if err := lf.f.Sync(); err != nil {
			lf.f.Close()
			os.Remove(lf.path)
			return fmt.Errorf("fsync %s: %w", lf.path, err)
		}
		syncDir(s.dir)
		casMax(s.synced, mkpos(cur.no, cur.size))
	}
	s.files = append(s.files, lf)
	p := mkpos(lf.no, lf.size)
	s.written.Store(p)
	s.readPos = p
	return nil
}

func (s *lstream) publish(ctx context.Context, data []byte, opts *PublishOptions) (PubAck, error) {
	if err := s.lock(ctx); err != nil {
		return PubAck{}, err
	}
	if sz := len(data) + headerSize(opts.Header) + len(opts.ID) + len(opts.Key); sz > s.cfg.MaxMsgSize {
		s.unlock()
		return PubAck{}, fmt.Errorf("%w: %d bytes, stream %s takes at most %d", ErrTooLarge, sz, s.name, s.cfg.MaxMsgSize)
	}
	now := time.Now()
	s.pruneDedupe(now.UnixNano())
	if opts.ID != "" {
		if d, ok := s.dedupe[opts.ID]; ok {
			s.unlock()
			return PubAck{Stream: s.name, Seq: d.seq, Duplicate: true}, nil
		}
	}
	var at time.Time
	if opts.Delay > 0 {
		at = now.Add(opts.Delay)
	}
	if opts.At.After(at) {
		at = opts.At
	}
	m := &logMsg{Seq: s.lastSeq + 1, Published: now.UnixNano(), Priority: uint8(opts.Priority),
		ID: opts.ID, Key: opts.Key, Header: opts.Header, Data: data}
	if at.After(now) {
		m.NotBefore = at.UnixNano()
	}
	body, err := encodeMsg(m)
	var rec []byte
	if err == nil {
		rec, err = AppendRecord(nil, body)
	}
	if err != nil {
		s.unlock()
		return PubAck{}, err
	}
	lf, off, p, err := s.appendLog(rec)
	if err != nil {
		s.unlock()
		return PubAck{}, err
	}
	s.addMsg(lf, m, off, len(rec))
	s.gc()
	f := lf.f
	s.unlock()
	s.wake()
	if err := s.durable(f, lf.path, p); err != nil {
		return PubAck{}, err
	}
	return PubAck{Stream: s.name, Seq: m.Seq}, nil
}

func (s *lstream) pruneDedupe(now int64) {
	limit := now - int64(s.cfg.DuplicateWindow)
	i := 0
	for ; i < len(s.dedupeQ) && s.dedupeQ[i].pub < limit; i++ {
		k := s.dedupeQ[i]
		if s.dedupe[k.id].seq == k.seq {
			delete(s.dedupe, k.id)
		}
	}
	if i > 0 {
		s.dedupeQ = append(s.dedupeQ[:0:0], s.dedupeQ[i:]...)
	}
}

// durable makes the record ending at p durable under the stream's policy.
func (s *lstream) durable(f *os.File, path string, p uint64) error {
	switch every := s.cfg.Sync.every; {
	case every == 0:
		return s.syncTo(f, path, p)
	case every > 0:
		s.syncMu.Lock()
		if s.syncTimer == nil && !s.stopped {
			s.syncTimer = time.AfterFunc(every, func() {
				s.syncMu.Lock()
				s.syncTimer = nil
				s.syncMu.Unlock()
				_ = f.Sync()
			})
		}
		s.syncMu.Unlock()
	}
	return nil
}

// syncTo returns once the log is fsynced up to p: group commit. A
// publisher whose record another's fsync already covered returns at once;
// otherwise it takes the stream's sync mutex (shared by all processes),
// and the one fsync it makes covers every record written before it began,
// its own and those of every publisher queued behind it.
func (s *lstream) syncTo(f *os.File, path string, p uint64) error {
	if s.synced.Load() >= p {
		return nil
	}
	if err := s.smu.Lock(context.Background()); errors.Is(err, procsync.ErrOwnerDead) {
		_ = s.smu.MarkConsistent() // a syncer died mid-fsync: nothing to repair
	} else if err != nil {
		return err
	}
	defer s.smu.Unlock()
	if s.synced.Load() >= p {
		return nil
	}
	w := s.written.Load()
	hook("fsync")
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if posFile(w) == posFile(p) && w > p {
		p = w
	}
	casMax(s.synced, p)
	return nil
}

func (s *lstream) readMsg(seq uint64) (*logMsg, error) {
	e := s.entry(seq)
	if e == nil || e.gone {
		return nil, nil
	}
	lf := s.fileByNo(e.file)
	if lf == nil {
		return nil, nil
	}
	b := make([]byte, e.size)
	if _, err := lf.f.ReadAt(b, e.off); err != nil {
		return nil, &CorruptError{File: lf.path, Offset: e.off, Reason: "unreadable: " + err.Error()}
	}
	body, _, err := DecodeRecord(b, e.off)
	if err != nil {
		err.(*CorruptError).File = lf.path
		return nil, err
	}
	m, err := decodeMsg(body, true)
	if err != nil || m.Seq != seq {
		return nil, &CorruptError{File: lf.path, Offset: e.off, Reason: "not the message indexed"}
	}
	return m, nil
}

func (s *lstream) stored(m *logMsg) StoredMessage {
	sm := StoredMessage{Stream: s.name, Seq: m.Seq, Data: m.Data, Header: m.Header, ID: m.ID, Key: m.Key,
		Priority: int(m.Priority), Published: time.Unix(0, m.Published)}
	if m.NotBefore != 0 {
		sm.NotBefore = time.Unix(0, m.NotBefore)
	}
	return sm
}

func (s *lstream) readMsgs(seq uint64, n int) ([]StoredMessage, error) {
	var out []StoredMessage
	for q := max(seq, s.firstSeq, s.base); q <= s.lastSeq && len(out) < n; q++ {
		m, err := s.readMsg(q)
		if err != nil {
			return out, err
		}
		if m != nil {
			out = append(out, s.stored(m))
		}
	}
	return out, nil
}

func (s *lstream) deleteMsg(seq uint64) error {
	if !s.live(seq) {
		return nil
	}
	rec, _ := AppendRecord(nil, encodeDelete(seq))
	if _, _, _, err := s.appendLog(rec); err != nil {
		return err
	}
	s.remove(seq)
	s.gc()
	return nil
}

func (s *lstream) info() StreamInfo {
	si := StreamInfo{Config: s.cfg, Msgs: s.liveMsgs, Bytes: s.liveByte, LastSeq: s.lastSeq}
	for q := s.firstSeq; q <= s.lastSeq; q++ {
		if s.live(q) {
			si.FirstSeq = q
			break
		}
	}
	if si.FirstSeq == 0 {
		si.FirstSeq = s.lastSeq + 1
	}
	for name := range s.groups {
		si.Groups = append(si.Groups, name)
	}
	sort.Strings(si.Groups)
	return si
}
