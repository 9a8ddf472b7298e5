package mq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ipcgo/ipc/internal/futex"
)

type gstate uint8

const (
	gWaiting  gstate = iota // ready from notBefore on
	gInflight               // held by own until deadline
	gDying                  // being moved to the dead-letter stream by own
)

// Reasons a message leaves a group without an ack (event Time of evDying
// and evDead).
const (
	reasonMaxDeliver = 1
	reasonTerminated = 2
	reasonCorrupt    = 3
)

func reasonText(r int64) string {
	switch r {
	case reasonMaxDeliver:
		return "max-deliver"
	case reasonTerminated:
		return "terminated"
	}
	return "corrupt"
}

// gentry is an unsettled message in a group's window.
type gentry struct {
	seq       uint64
	attempt   uint32
	state     gstate
	own       owner
	deadline  int64
	notBefore int64
	reason    int64
}

// lgroup is the view of a group: every sequence up to cursor that is not
// in win is settled (acked, dead-lettered, or removed from the stream).
type lgroup struct {
	name   string
	path   string
	f      *os.File
	off    int64
	cfg    GroupConfig
	cursor uint64
	win    map[uint64]*gentry

	redelivered, dead uint64
}

func groupPath(dir, name string) string { return filepath.Join(dir, name+".grp") }

// loadGroups (re)reads every journal of the stream. At set-up (setup) a
// torn or damaged tail is cut (a damaged one copied to quarantine/).
func (s *lstream) loadGroups() error {
	for _, g := range s.groups {
		s.retired = append(s.retired, g.f)
	}
	s.groups = map[string]*lgroup{}
	s.seenMeta, s.seenJ = s.metaGen.Load(), s.jgen.Load()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".grp")
		if !ok || validName("group", name) != nil {
			continue
		}
		g, err := s.openGroup(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		s.groups[name] = g
	}
	s.wqSweep()
	return nil
}

func (s *lstream) openGroup(name string) (*lgroup, error) {
	path := groupPath(s.dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 64<<10)
	n, _ := f.ReadAt(b, 0)
	if _, err := validateFileHeader(b[:n], path, kindGroup); err != nil {
		f.Close()
		return nil, err
	}
	var gf groupFile
	end, err := decodeJSONRecord(b[:n], path, &gf)
	if err != nil {
		f.Close()
		return nil, err
	}
	g := &lgroup{name: name, path: path, f: f, off: end, cfg: gf.Config, cursor: gf.Cursor, win: map[uint64]*gentry{},
		redelivered: gf.Redelivered, dead: gf.Dead}
	if err := s.readJournal(g); err != nil {
		f.Close()
		return nil, err
	}
	return g, nil
}

// readJournal applies what was appended to g's journal since it was last
// read.
func (s *lstream) readJournal(g *lgroup) error {
	st, err := g.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() <= g.off {
		return nil
	}
	b := make([]byte, st.Size()-g.off)
	if _, err := g.f.ReadAt(b, g.off); err != nil {
		return fmt.Errorf("read %s: %w", g.path, err)
	}
	for len(b) > 0 {
		body, n, err := DecodeRecord(b, g.off)
		if err == nil {
			var e event
			if e, err = decodeEvent(body); err == nil {
				s.applyEvent(g, e)
				g.off += int64(n)
				b = b[n:]
				continue
			}
			err = &CorruptError{Offset: g.off, Reason: err.Error()}
		}
		err.(*CorruptError).File = g.path
		if tornTail(b) {
			return nil // cut by the repair that follows a holder's death
		}
		// Damage inside a journal: what follows is skipped; the
		// messages it settled may be delivered again (at least once).
		s.quarantine(g.path, b)
		return nil
	}
	return nil
}

func (g *lgroup) fill(s *lstream, upTo uint64) {
	if g.cursor+1 < s.firstSeq {
		g.cursor = s.firstSeq - 1
	}
	for q := g.cursor + 1; q <= upTo; q++ {
		if e := s.entry(q); e != nil && !e.gone {
			g.win[q] = &gentry{seq: q, notBefore: e.nb}
		}
	}
	if upTo > g.cursor {
		g.cursor = upTo
	}
}

func (g *lgroup) get(s *lstream, seq uint64) *gentry {
	if seq > g.cursor {
		g.fill(s, seq)
	}
	return g.win[seq]
}

func (s *lstream) applyEvent(g *lgroup, e event) {
	en := g.get(s, e.Seq)
	switch e.Type {
	case evAck, evDead:
		if en != nil {
			delete(g.win, e.Seq)
			if e.Type == evDead {
				g.dead++
			}
			s.wqSettled(e.Seq)
		}
		return
	}
	if en == nil {
		return
	}
	switch e.Type {
	case evDeliver:
		en.state, en.attempt, en.own, en.deadline = gInflight, e.Attempt, e.Owner, e.Time
		if e.Attempt > 1 {
			g.redelivered++
		}
	case evNak:
		en.state, en.notBefore = gWaiting, e.Time
	case evProgress:
		en.deadline = e.Time
	case evRelease:
		en.state, en.notBefore = gWaiting, 0
	case evDying:
		en.state, en.own, en.reason, en.attempt = gDying, e.Owner, e.Time, e.Attempt
	}
}

func (g *lgroup) settled(seq uint64) bool { return seq <= g.cursor && g.win[seq] == nil }

// wqSettled removes seq from a work-queue stream once every group has
// settled it.
func (s *lstream) wqSettled(seq uint64) {
	if s.cfg.Retention != WorkQueuePolicy || len(s.groups) == 0 || !s.live(seq) {
		return
	}
	for _, g := range s.groups {
		if !g.settled(seq) {
			return
		}
	}
	s.remove(seq)
}

func (s *lstream) wqSweep() {
	if s.cfg.Retention != WorkQueuePolicy || len(s.groups) == 0 {
		return
	}
	upTo := s.lastSeq
	for _, g := range s.groups {
		upTo = min(upTo, g.cursor)
	}
	for q := s.firstSeq; q <= upTo; q++ {
		s.wqSettled(q)
	}
	s.gc()
}

// writeEvents appends events to g's journal and applies them. Called
// holding the lock.
func (s *lstream) writeEvents(g *lgroup, evs ...event) error {
	var buf []byte
	for i := range evs {
		buf, _ = AppendRecord(buf, evs[i].encode())
	}
	if _, err := g.f.WriteAt(buf, g.off); err != nil {
		_ = g.f.Truncate(g.off)
		return fmt.Errorf("append to %s: %w", g.path, err)
	}
	if localHook != nil {
		hook("event-written-" + string(evs[0].Type))
	}
	g.off += int64(len(buf))
	s.seenJ = s.jgen.Add(1)
	for _, e := range evs {
		s.applyEvent(g, e)
	}
	if s.cfg.Retention == WorkQueuePolicy {
		s.gc()
	}
	if g.off > compactAt {
		floor := g.floor()
		if evs, redel := s.snapshot(g, floor); g.off > 4*int64(len(evs)+1)*(evSize+RecordHeaderSize) {
			return s.compact(g, floor, evs, redel)
		}
	}
	return nil
}

// floor is the group's ack floor: every sequence up to it is settled.
func (g *lgroup) floor() uint64 {
	f := g.cursor
	for q := range g.win {
		f = min(f, q-1)
	}
	return f
}

// compactAt is the journal size from which a journal mostly made of
// settled history is rewritten (a variable for tests).
var compactAt int64 = 4 << 20

// compact rewrites g's journal as the few events that make its present
// state: the settled sequences above the ack floor, and each unsettled
// message's attempt, holder and times. The new journal replaces the old
// one by a rename; every view reloads the groups.
// snapshot returns the events that rebuild g's state above floor, and how
// many of them count as redeliveries.
func (s *lstream) snapshot(g *lgroup, floor uint64) (evs []event, redel uint64) {
	for q := floor + 1; q <= g.cursor; q++ {
		en := g.win[q]
		if en == nil {
			evs = append(evs, event{Type: evAck, Seq: q})
			continue
		}
		if en.attempt > 0 {
			evs = append(evs, event{Type: evDeliver, Seq: q, Attempt: en.attempt, Owner: en.own, Time: en.deadline})
			if en.attempt > 1 {
				redel++
			}
		}
		switch {
		case en.state == gDying:
			evs = append(evs, event{Type: evDying, Seq: q, Attempt: en.attempt, Owner: en.own, Time: en.reason})
		case en.state == gWaiting && (en.attempt > 0 || s.entry(q) == nil || en.notBefore != s.entry(q).nb):
			evs = append(evs, event{Type: evNak, Seq: q, Time: en.notBefore})
		}
	}
	return evs, redel
}

func (s *lstream) compact(g *lgroup, floor uint64, evs []event, redel uint64) error {
	data, err := encodeJSONFile(fileHeader{Kind: kindGroup, A: s.id},
		groupFile{Config: g.cfg, Cursor: floor, Redelivered: g.redelivered - redel, Dead: g.dead})
	if err != nil {
		return err
	}
	for i := range evs {
		data, _ = AppendRecord(data, evs[i].encode())
	}
	tmp := filepath.Join(s.b.dir, "trash", fmt.Sprintf("grp-%016x", randU64()))
	if err := writeFileSync(tmp, data, s.b.cfg.FilePerm); err != nil {
		os.Remove(tmp)
		return err
	}
	hook("compact")
	if err := os.Rename(tmp, g.path); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(s.dir)
	s.metaGen.Add(1)
	return s.loadGroups()
}

func sameGroup(a, b GroupConfig) bool {
	if len(a.Backoff) == 0 {
		a.Backoff = nil
	}
	if len(b.Backoff) == 0 {
		b.Backoff = nil
	}
	return reflect.DeepEqual(a, b)
}

func (s *lstream) createGroup(c GroupConfig) (GroupInfo, error) {
	if g := s.groups[c.Name]; g != nil {
		if !sameGroup(g.cfg, c) {
			return GroupInfo{}, fmt.Errorf("%w: group %s/%s", ErrExists, s.name, c.Name)
		}
		return s.groupInfo(g), nil
	}
	cur := s.firstSeq - 1
	if s.firstSeq == 0 {
		cur = s.lastSeq
	}
	if c.StartSeq > 0 {
		cur = c.StartSeq - 1
	}
	data, err := encodeJSONFile(fileHeader{Kind: kindGroup, A: s.id}, groupFile{Config: c, Cursor: cur})
	if err != nil {
		return GroupInfo{}, err
	}
	tmp := filepath.Join(s.b.dir, "trash", fmt.Sprintf("grp-%016x", randU64()))
	if err := writeFileSync(tmp, data, s.b.cfg.FilePerm); err != nil {
		os.Remove(tmp)
		return GroupInfo{}, err
	}
	if err := os.Rename(tmp, groupPath(s.dir, c.Name)); err != nil {
		os.Remove(tmp)
		return GroupInfo{}, err
	}
	syncDir(s.dir)
	s.metaGen.Add(1)
	if err := s.loadGroups(); err != nil {
		return GroupInfo{}, err
	}
	g := s.groups[c.Name]
	if g == nil {
		return GroupInfo{}, fmt.Errorf("%w: %s/%s vanished", ErrGroupNotFound, s.name, c.Name)
	}
	return s.groupInfo(g), nil
}

func (s *lstream) deleteGroup(name string) error {
	if s.groups[name] == nil {
		return fmt.Errorf("%w: %s/%s", ErrGroupNotFound, s.name, name)
	}
	if err := os.Remove(groupPath(s.dir, name)); err != nil {
		return err
	}
	s.metaGen.Add(1)
	err := s.loadGroups()
	s.wake()
	return err
}

func (s *lstream) groupInfo(g *lgroup) GroupInfo {
	g.fill(s, min(s.lastSeq, g.cursor+windowSize))
	gi := GroupInfo{Stream: s.name, Config: g.cfg, Redelivered: g.redelivered, DeadLettered: g.dead}
	now := time.Now().UnixNano()
	floor := g.cursor
	for q, en := range g.win {
		if !s.live(q) {
			continue
		}
		floor = min(floor, q-1)
		switch {
		case en.state == gInflight && en.deadline > now && s.b.alive(en.own, nil):
			gi.InFlight++
		case en.state == gWaiting && en.attempt == 0:
			gi.Pending++
		}
	}
	for q := g.cursor + 1; q <= s.lastSeq; q++ {
		if s.live(q) {
			gi.Pending++
		}
	}
	gi.AckFloor = floor
	for q := floor + 1; q <= s.lastSeq; q++ {
		if e := s.entry(q); e != nil && !e.gone {
			gi.OldestUnacked = time.Unix(0, e.pub)
			break
		}
	}
	return gi
}

// backoff is the delay before the attempt after attempt k failed.
func backoff(c *GroupConfig, k uint32) int64 {
	if len(c.Backoff) == 0 || k == 0 {
		return 0
	}
	return int64(c.Backoff[min(int(k)-1, len(c.Backoff)-1)])
}

// lconsumer is a consumer of a group of the local backend.
type lconsumer struct {
	s      *lstream
	group  string
	me     owner
	closed atomic.Bool
}

type dying struct {
	seq     uint64
	attempt uint32
	reason  int64
	msg     *logMsg
}

func (c *lconsumer) groupLocked() (*lgroup, error) {
	g := c.s.groups[c.group]
	if g == nil {
		return nil, fmt.Errorf("%w: %s/%s", ErrGroupNotFound, c.s.name, c.group)
	}
	return g, nil
}

// tryFetch hands out up to n ready deliveries. It also reports when the
// next one may become ready (0: not known) and whether another process
// holds deliveries (whose death the caller should watch for).
func (c *lconsumer) tryFetch(ctx context.Context, n int) (ds []*Delivery, next int64, watch bool, err error) {
	s := c.s
	if err := s.lock(ctx); err != nil {
		return nil, 0, false, err
	}
	g, err := c.groupLocked()
	if err != nil {
		s.unlock()
		return nil, 0, false, err
	}
	for len(g.win) < windowSize && g.cursor < s.lastSeq {
		g.fill(s, min(s.lastSeq, g.cursor+uint64(windowSize-len(g.win))))
	}
	now := time.Now().UnixNano()
	cache := map[uint32]bool{}
	ordered := g.cfg.OrderedByKey
	var keyMin map[uint64]uint64
	if ordered {
		keyMin = map[uint64]uint64{}
		for q := range g.win {
			if e := s.entry(q); e != nil && e.keyh != 0 {
				if m, ok := keyMin[e.keyh]; !ok || q < m {
					keyMin[e.keyh] = q
				}
			}
		}
	}
	var cands []*gentry
	for q, en := range g.win {
		ie := s.entry(q)
		if ie == nil || ie.gone {
			delete(g.win, q) // removed from the stream: nothing to deliver
			continue
		}
		var at int64
		switch en.state {
		case gWaiting:
			at = en.notBefore
		case gInflight:
			if s.b.alive(en.own, cache) {
				if en.own.Tok != c.me.Tok {
					watch = true
				}
				at = en.deadline + backoff(&g.cfg, en.attempt)
			}
		case gDying:
			if s.b.alive(en.own, cache) {
				watch = true
				continue
			}
		}
		if at > now {
			if next == 0 || at < next {
				next = at
			}
			continue
		}
		if ordered && ie.keyh != 0 && keyMin[ie.keyh] != q {
			continue
		}
		cands = append(cands, en)
	}
	sort.Slice(cands, func(i, j int) bool {
		pi, pj := s.entry(cands[i].seq).prio, s.entry(cands[j].seq).prio
		if pi != pj {
			return pi > pj
		}
		return cands[i].seq < cands[j].seq
	})
	var evs []event
	var dl []dying
	deadline := now + int64(g.cfg.AckWait)
	for _, en := range cands {
		if len(ds) == n {
			break
		}
		m, rerr := s.readMsg(en.seq)
		if rerr != nil {
			evs = append(evs, event{Type: evDead, Seq: en.seq, Time: reasonCorrupt})
			continue
		}
		if m == nil {
			continue
		}
		if en.state == gDying || (g.cfg.MaxDeliver > 0 && en.attempt >= uint32(g.cfg.MaxDeliver)) {
			reason := int64(reasonMaxDeliver)
			if en.state == gDying {
				reason = en.reason
			}
			if g.cfg.DeadLetter == "" {
				evs = append(evs, event{Type: evDead, Seq: en.seq, Time: reason})
			} else {
				evs = append(evs, event{Type: evDying, Seq: en.seq, Attempt: en.attempt, Owner: c.me, Time: reason})
				dl = append(dl, dying{en.seq, en.attempt, reason, m})
			}
			continue
		}
		att := en.attempt + 1
		evs = append(evs, event{Type: evDeliver, Seq: en.seq, Attempt: att, Owner: c.me, Time: deadline})
		ds = append(ds, &Delivery{StoredMessage: s.stored(m), Attempt: int(att), Deadline: time.Unix(0, deadline), s: c})
	}
	if len(evs) > 0 {
		if err := s.writeEvents(g, evs...); err != nil {
			s.unlock()
			return nil, 0, false, err
		}
	}
	s.unlock()
	for _, d := range dl {
		if err := c.deadLetter(ctx, g.cfg.DeadLetter, d); err != nil && len(ds) == 0 {
			return nil, 0, false, err
		}
	}
	if len(dl) > 0 {
		next = now // look again at once
	}
	return ds, next, watch, nil
}

// deadLetter publishes a dying message to the dead-letter stream, then
// settles it. A crash in between publishes it again (at least once).
func (c *lconsumer) deadLetter(ctx context.Context, stream string, d dying) error {
	h := Header{}
	for k, v := range d.msg.Header {
		h[k] = v
	}
	h.Set(HeaderDeadStream, c.s.name)
	h.Set(HeaderDeadGroup, c.group)
	h.Set(HeaderDeadSeq, strconv.FormatUint(d.seq, 10))
	h.Set(HeaderDeadReason, reasonText(d.reason))
	h.Set(HeaderDeadAttempts, strconv.Itoa(int(d.attempt)))
	_, perr := c.s.b.publish(ctx, stream, d.msg.Data, &PublishOptions{Header: h, Key: d.msg.Key, Priority: int(d.msg.Priority)})
	s := c.s
	if err := s.lock(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	defer s.unlock()
	g, err := c.groupLocked()
	if err != nil {
		return err
	}
	en := g.win[d.seq]
	if en == nil || en.state != gDying || en.own != c.me {
		return perr
	}
	ev := event{Type: evDead, Seq: d.seq, Time: d.reason}
	if perr != nil { // give it back: tried again later
		ev = event{Type: evRelease, Seq: d.seq}
	}
	if err := s.writeEvents(g, ev); err != nil {
		return err
	}
	return perr
}

func (c *lconsumer) fetch(ctx context.Context, n int) ([]*Delivery, error) {
	s := c.s
	stop := context.AfterFunc(ctx, func() { futex.Wake(s.notify, math.MaxInt32) })
	defer stop()
	for {
		if c.closed.Load() {
			return nil, errClosed
		}
		v := s.notify.Load()
		ds, next, watch, err := c.tryFetch(ctx, n)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := 50 * time.Millisecond
		if next > 0 {
			wait = min(wait, time.Until(time.Unix(0, next)))
		}
		if watch { // a holder's death wakes nobody: look every 2 ms
			wait = min(wait, 2*time.Millisecond)
		}
		wait = max(wait, 20*time.Microsecond)
		s.waiters.Add(1)
		futex.Wait(s.notify, v, wait)
		s.waiters.Add(^uint32(0))
	}
}

func (c *lconsumer) close() error {
	if c.closed.Swap(true) {
		return nil
	}
	b := c.s.b
	defer func() {
		b.mu.Lock()
		delete(b.cids, c.me.CID)
		b.mu.Unlock()
		c.s.wake()
	}()
	if b.isClosed() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := c.s
	if err := s.lock(ctx); err != nil {
		if errors.Is(err, ErrStreamNotFound) {
			return nil
		}
		return err
	}
	defer s.unlock()
	g := s.groups[c.group]
	if g == nil {
		return nil
	}
	var evs []event
	for q, en := range g.win {
		if en.state == gInflight && en.own == c.me {
			evs = append(evs, event{Type: evRelease, Seq: q})
		}
	}
	if len(evs) == 0 {
		return nil
	}
	return s.writeEvents(g, evs...)
}

// settle runs f on the group's entry of d if this consumer still holds it.
func (c *lconsumer) settle(ctx context.Context, d *Delivery, f func(g *lgroup, en *gentry, now int64) ([]event, *dying)) error {
	s := c.s
	if c.closed.Load() {
		return errClosed
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	g, err := c.groupLocked()
	if err != nil {
		s.unlock()
		return err
	}
	en := g.win[d.Seq]
	if en == nil || en.state != gInflight || en.own != c.me || en.attempt != uint32(d.Attempt) {
		s.unlock()
		return fmt.Errorf("%w: %s/%s seq %d attempt %d", ErrDeliveryLost, s.name, c.group, d.Seq, d.Attempt)
	}
	evs, dl := f(g, en, time.Now().UnixNano())
	err = s.writeEvents(g, evs...)
	cfg := g.cfg
	s.unlock()
	if err != nil {
		return err
	}
	s.wake()
	if dl != nil {
		return c.deadLetter(ctx, cfg.DeadLetter, *dl)
	}
	return nil
}

// giveUp is the events that send en to the dead-letter stream (or drop
// it when the group has none).
func (c *lconsumer) giveUp(g *lgroup, en *gentry, reason int64) ([]event, *dying) {
	if g.cfg.DeadLetter == "" {
		return []event{{Type: evDead, Seq: en.seq, Time: reason}}, nil
	}
	m, err := c.s.readMsg(en.seq)
	if err != nil || m == nil {
		return []event{{Type: evDead, Seq: en.seq, Time: reasonCorrupt}}, nil
	}
	return []event{{Type: evDying, Seq: en.seq, Attempt: en.attempt, Owner: c.me, Time: reason}},
		&dying{en.seq, en.attempt, reason, m}
}

func (c *lconsumer) ack(ctx context.Context, d *Delivery) error {
	return c.settle(ctx, d, func(g *lgroup, en *gentry, now int64) ([]event, *dying) {
		hook("ack")
		return []event{{Type: evAck, Seq: en.seq}}, nil
	})
}

func (c *lconsumer) nak(ctx context.Context, d *Delivery, delay time.Duration) error {
	return c.settle(ctx, d, func(g *lgroup, en *gentry, now int64) ([]event, *dying) {
		if g.cfg.MaxDeliver > 0 && en.attempt >= uint32(g.cfg.MaxDeliver) {
			return c.giveUp(g, en, reasonMaxDeliver)
		}
		wait := int64(delay)
		if delay == 0 {
			wait = backoff(&g.cfg, en.attempt)
		}
		return []event{{Type: evNak, Seq: en.seq, Time: now + wait}}, nil
	})
}

func (c *lconsumer) term(ctx context.Context, d *Delivery, reason string) error {
	return c.settle(ctx, d, func(g *lgroup, en *gentry, now int64) ([]event, *dying) {
		return c.giveUp(g, en, reasonTerminated)
	})
}

func (c *lconsumer) inProgress(ctx context.Context, d *Delivery) error {
	return c.settle(ctx, d, func(g *lgroup, en *gentry, now int64) ([]event, *dying) {
		dl := now + int64(g.cfg.AckWait)
		d.Deadline = time.Unix(0, dl)
		return []event{{Type: evProgress, Seq: en.seq, Time: dl}}, nil
	})
}
