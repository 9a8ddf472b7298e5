package dsync

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// snapshot returns the live entries of the keys that match filter, in one
// request (a watch read up to the end of its initial values).
func snapshot(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case en, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watch ended")
			}
			if en == nil {
				return out, nil
			}
			if en.Operation() == jetstream.KeyValuePut {
				out = append(out, en)
			}
		}
	}
}

// stopWatch stops w in the background: stopping an ordered consumer asks
// the server to delete it, a round trip the caller (a Lock that just got
// its lease) need not wait for. Close waits for it.
func (c *Client) stopWatch(w jetstream.KeyWatcher) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = w.Stop()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		_ = w.Stop()
	}()
}
