package dsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Holding is one held lock, semaphore permit or election candidacy, as
// Inspect reports it.
type Holding struct {
	Namespace string        `json:"namespace"`
	Kind      Kind          `json:"-"`
	KindName  string        `json:"kind"` // "mutex", "semaphore", "election"
	Name      string        `json:"name"` // the primitive's name
	Key       string        `json:"key"`
	Permit    int           `json:"permit"` // semaphores: the permit's index; -1 otherwise
	Size      int           `json:"size"`   // semaphores: the number of permits; 0 otherwise
	Holder    string        `json:"holder"` // the holding Client's ID
	Token     uint64        `json:"token"`  // the fencing token (the term, for a candidacy)
	Leader    bool          `json:"leader"` // elections: this candidacy leads
	Value     []byte        `json:"value,omitempty"`
	TTL       time.Duration `json:"-"`
	Written   time.Time     `json:"written"` // the last renewal the server stored
	Expires   time.Time     `json:"expires"` // Written + TTL: when the server removes the key unless renewed
	Err       string        `json:"error,omitempty"`
}

// Inspect lists what is held in the namespace of the server(s) at url, or
// in every namespace if namespace is empty, sorted by namespace and key.
// It only reads: it creates no bucket and takes nothing.
func Inspect(ctx context.Context, url, namespace string) ([]Holding, error) {
	if namespace != "" && !namespaceRE.MatchString(namespace) {
		return nil, opErr("inspect", url, fmt.Errorf("%w: namespace %q", ErrBadName, namespace))
	}
	opts := []nats.Option{nats.Name("dsync inspect"), nats.MaxReconnects(0)}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, opErr("inspect", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, opErr("inspect", url, err)
	}
	var buckets []string
	if namespace != "" {
		buckets = []string{BucketPrefix + namespace}
	} else {
		lister := js.KeyValueStoreNames(ctx)
		for b := range lister.Name() {
			if strings.HasPrefix(b, BucketPrefix) {
				buckets = append(buckets, b)
			}
		}
		if err := lister.Error(); err != nil {
			return nil, opErr("inspect", url, err)
		}
	}
	var out []Holding
	for _, b := range buckets {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			if namespace != "" && errors.Is(err, jetstream.ErrBucketNotFound) {
				return nil, nil
			}
			return nil, opErr("inspect", b, err)
		}
		ents, err := snapshot(ctx, kv, ">")
		if err != nil {
			return nil, opErr("inspect", b, err)
		}
		out = append(out, holdings(strings.TrimPrefix(b, BucketPrefix), ents)...)
	}
	return out, nil
}

// holdings decodes the live entries of one namespace and marks the leader
// of each election.
func holdings(ns string, ents []jetstream.KeyValueEntry) []Holding {
	out := make([]Holding, 0, len(ents))
	elections := map[string]*candidates{}
	for _, en := range ents {
		h := Holding{Namespace: ns, Key: en.Key(), Permit: -1, Token: en.Revision(), Written: en.Created()}
		kind, rest, _ := strings.Cut(en.Key(), ".")
		h.Name = rest
		r, err := decodeRecord(en.Value())
		if err != nil {
			h.KindName, h.Err = kind, err.Error()
			out = append(out, h)
			continue
		}
		h.Kind, h.KindName, h.Holder, h.TTL = r.Kind, r.Kind.String(), r.Holder, r.TTL
		h.Expires = h.Written.Add(r.TTL)
		if r.Token != 0 {
			h.Token = r.Token
		}
		switch r.Kind {
		case KindSemaphore:
			if i := strings.LastIndexByte(rest, '.'); i > 0 {
				h.Name = rest[:i]
				h.Permit, _ = strconv.Atoi(rest[i+1:])
			}
			h.Size = int(r.N)
		case KindElection:
			if i := strings.LastIndexByte(rest, '.'); i > 0 {
				h.Name = rest[:i]
			}
			h.Value = r.Value
			v := elections[h.Name]
			if v == nil {
				v = newCandidates(h.Name)
				elections[h.Name] = v
			}
			v.apply(en)
		}
		out = append(out, h)
	}
	for i := range out {
		if v := elections[out[i].Name]; v != nil && out[i].Kind == KindElection {
			ld, _ := v.leader()
			out[i].Leader = ld.Key == out[i].Key
		}
	}
	slices.SortFunc(out, func(a, b Holding) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Key, b.Key))
	})
	return out
}
