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
