package dsync

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/nats-io/nats.go/jetstream"
)

// Election elects one leader among the candidates that campaign on it, as
// etcd's concurrency.Election does. Each candidacy is a lease on a key of
// its own; the leader is the live candidate whose candidacy was created
// first (the lowest fencing token), so candidates lead in the order they
// campaigned, and a leader's token, its term, is larger than every
// earlier leader's. An Election value is one candidate: Campaign on it
// while it already campaigns starts a second candidacy.
type Election struct {
	c      *Client
	name   string
	prefix string

	last lastLease
}

// Leader describes a leader (or a candidate).
type Leader struct {
	Name   string // the election's name
	Key    string // the candidacy's key
	Holder string // the ID of the candidate's Client
	Token  uint64 // the term: the revision that created the candidacy
	Value  []byte // what the candidate campaigned with
}

// Election returns the election of the given name (as for Mutex). Nothing
// is sent to the server.
func (c *Client) Election(name string) (*Election, error) {
	if err := checkName(name); err != nil {
		return nil, opErr("election", name, err)
	}
	return &Election{c: c, name: name, prefix: "elect." + name + "."}, nil
}

// Name is the election's name.
func (e *Election) Name() string { return e.name }

// Campaign enters the election with value (at most MaxValue bytes) and
// waits until this candidate leads, or ctx ends (the candidacy is then
// withdrawn), or the candidacy's lease ends first. It returns the lease
// of the leadership: its Token is the term, and its end (Done, Context)
// is the end of the leadership.
func (e *Election) Campaign(ctx context.Context, value []byte) (*Lease, error) {
	if len(value) > MaxValue {
		return nil, opErr("campaign", e.name, fmt.Errorf("%w: value of %d bytes (at most %d)", ErrBadConfig, len(value), MaxValue))
	}
	key := e.prefix + randomID(8)
	l, err := e.c.acquire(ctx, claim{op: "campaign", name: e.name, keys: []string{key}, filter: key,
		rec: record{Kind: KindElection, TTL: e.c.cfg.TTL, Holder: e.c.cfg.ID, Value: value}}, false)
	if err != nil {
		return nil, err
	}
	if err := e.awaitLead(ctx, l); err != nil {
		_ = l.Release(context.Background())
		return nil, opErr("campaign", e.name, err)
	}
	e.last.set(l)
	return l, nil
}

// awaitLead watches the candidacies until none older than l's is left.
// The watch starts after l's key was created, so its initial values hold
// every older candidacy still alive; none can be created later (newer
// creates get larger revisions).
func (e *Election) awaitLead(ctx context.Context, l *Lease) error {
	w, err := e.c.kv.Watch(ctx, e.prefix+"*")
	if err != nil {
		return err
	}
	defer e.c.stopWatch(w)
	v := newCandidates(e.name)
	ready := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.c.closing:
			return net.ErrClosed
		case <-l.Done():
			return l.Err()
		case en, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			if en == nil {
				ready = true
			} else {
				v.apply(en)
			}
			if ready {
				if ld, ok := v.leader(); !ok || ld.Token >= l.Token() {
					return nil
				}
			}
		}
	}
}

// Resign gives up the leadership (or candidacy) this Election took last:
// its key is deleted and the next candidate leads. It returns ErrNotHeld
// if there is none or it had already ended.
func (e *Election) Resign(ctx context.Context) error {
	return e.last.release(ctx, "resign", e.name)
}

// Leader returns the current leader, or ErrNoLeader if nobody campaigns.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	if e.c.isClosed() {
		return Leader{}, opErr("leader", e.name, net.ErrClosed)
	}
	ents, err := snapshot(ctx, e.c.kv, e.prefix+"*")
	if err != nil {
		return Leader{}, opErr("leader", e.name, err)
	}
	v := newCandidates(e.name)
	for _, en := range ents {
		v.apply(en)
	}
	if ld, ok := v.leader(); ok {
		return ld, nil
	}
	return Leader{}, opErr("leader", e.name, ErrNoLeader)
}

// Observe sends the current leader, if any, and then every new leader, in
// the order they took office (strictly increasing Token), until ctx ends
// or the Client is closed; the channel is then closed. A leader that
// resigns with nobody to follow is not reported (there is no leader to
// send); the next candidate is. A slow reader holds the watch back, it
// does not lose leaders.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	e.c.mu.Lock()
	if e.c.closed {
		e.c.mu.Unlock()
		close(ch)
		return ch
	}
	e.c.wg.Add(1)
	e.c.mu.Unlock()
	go func() {
		defer e.c.wg.Done()
		defer close(ch)
		w, err := e.c.kv.Watch(ctx, e.prefix+"*")
		if err != nil {
			return
		}
		defer func() { _ = w.Stop() }()
		v := newCandidates(e.name)
		ready := false
		var last uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.c.closing:
				return
			case en, ok := <-w.Updates():
				if !ok {
					return
				}
				if en == nil {
					ready = true
				} else {
					v.apply(en)
				}
				ld, ok := v.leader()
				if !ready || !ok || ld.Token <= last {
					continue
				}
				select {
				case ch <- ld:
					last = ld.Token
				case <-ctx.Done():
					return
				case <-e.c.closing:
					return
				}
			}
		}
	}()
	return ch
}

// candidates is a watcher's view of the live candidacies of an election.
type candidates struct {
	name string
	live map[string]Leader
}

func newCandidates(name string) *candidates {
	return &candidates{name: name, live: map[string]Leader{}}
}

func (v *candidates) apply(en jetstream.KeyValueEntry) {
	if en.Operation() != jetstream.KeyValuePut {
		delete(v.live, en.Key())
		return
	}
	r, err := decodeRecord(en.Value())
	if err != nil || r.Kind != KindElection {
		return // not a candidacy: it cannot lead
	}
	tok := r.Token
	if tok == 0 {
		tok = en.Revision()
	}
	v.live[en.Key()] = Leader{Name: v.name, Key: en.Key(), Holder: r.Holder, Token: tok, Value: r.Value}
}

// leader is the live candidate with the lowest token.
func (v *candidates) leader() (Leader, bool) {
	var best Leader
	found := false
	for _, c := range v.live {
		if !found || c.Token < best.Token {
			best, found = c, true
		}
	}
	return best, found
}
