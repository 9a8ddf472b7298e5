package dsync

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A key that was deleted or expired keeps a marker, and a create must name
// the marker's revision as the key's expected last sequence. kv.Create
// finds it out by failing once and reading the key (three round trips);
// the Client remembers the markers it has seen (its own releases, the
// deletions and expiries its waiters watched) so that the create that
// follows takes one round trip.

// noteMarker records the revision of a marker seen on key.
func (c *Client) noteMarker(key string, rev uint64) {
	c.mu.Lock()
	if c.markers == nil {
		c.markers = map[string]uint64{}
	}
	c.markers[key] = rev
	c.mu.Unlock()
}

// takeMarker returns and forgets the marker revision recorded for key.
func (c *Client) takeMarker(key string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rev, ok := c.markers[key]
	delete(c.markers, key)
	return rev, ok
}

// create creates key with a TTL if it holds no live value and returns the
// revision (kv.Create's contract), in one round trip when the key's marker
// is known and still the key's last message.
func (c *Client) create(ctx context.Context, key string, value []byte) (uint64, error) {
	if rev, ok := c.takeMarker(key); ok {
		ack, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: c.subject(key), Data: value},
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(c.cfg.TTL))
		if err == nil {
			return ack.Sequence, nil
		}
		if !isWrongLastSeq(err) {
			return 0, err
		}
		// Written since: find out by the long way.
	}
	return c.kv.Create(ctx, key, value, jetstream.KeyTTL(c.cfg.TTL))
}

// deleteKey deletes key if rev is still its last revision (kv.Delete with
// LastRevision), remembering the marker it leaves. A key written since
// returns jetstream.ErrKeyRevisionMismatch.
func (c *Client) deleteKey(ctx context.Context, key string, rev uint64) error {
	m := nats.NewMsg(c.subject(key))
	m.Header.Set("KV-Operation", "DEL")
	ack, err := c.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		if isWrongLastSeq(err) {
			return errors.Join(err, jetstream.ErrKeyRevisionMismatch)
		}
		return err
	}
	c.noteMarker(key, ack.Sequence)
	return nil
}
