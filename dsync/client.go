package dsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BucketPrefix starts the name of every bucket dsync uses.
const BucketPrefix = "dsync_"

// Client is a coordination handle on one namespace of a NATS server or
// cluster. Its methods are safe for concurrent use. Close ends every lease
// it holds.
type Client struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string

	closing chan struct{}
	mu      sync.Mutex
	closed  bool
	leases  map[*Lease]struct{}
	markers map[string]uint64 // key -> revision of its delete or expiry marker (marker.go)
	wg      sync.WaitGroup
}

// Open connects to the NATS server(s) at url ("nats://host:4222", several
// comma-separated for a cluster) and opens the namespace's bucket, creating
// it if needed. cfg may be nil (DefaultConfig).
func Open(ctx context.Context, url string, cfg *Config) (*Client, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, opErr("open", url, err)
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomID(4))
	}
	opts := []nats.Option{
		nats.Name("dsync " + c.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 100*time.Millisecond),
		nats.Timeout(c.RequestTimeout),
		nats.RetryOnFailedConnect(false),
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}
	opts = append(opts, c.NATSOptions...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, opErr("open", url, err)
	}
	cl, err := openConn(ctx, nc, c)
	if err != nil {
		nc.Close()
		return nil, opErr("open", url, err)
	}
	return cl, nil
}

func openConn(ctx context.Context, nc *nats.Conn, c Config) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	bucket := BucketPrefix + c.Namespace
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucket,
		Description:    "dsync leases, locks, semaphores and elections",
		History:        1,
		Replicas:       c.Replicas,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: c.TTL,
	})
	if err != nil {
		// Made by another client, perhaps with other settings: use it if it
		// can expire keys.
		var kerr error
		kv, kerr = js.KeyValue(ctx, bucket)
		if kerr != nil {
			return nil, err
		}
		st, serr := kv.Status(ctx)
		if serr != nil {
			return nil, serr
		}
		if s, ok := st.(*jetstream.KeyValueBucketStatus); ok && s.LimitMarkerTTL() == 0 {
			return nil, fmt.Errorf("%w: bucket %s exists without per-key TTLs", ErrMismatch, bucket)
		}
	}
	return &Client{
		cfg: c, nc: nc, js: js, kv: kv, bucket: bucket,
		closing: make(chan struct{}),
		leases:  make(map[*Lease]struct{}),
	}, nil
}

// ID is the name this Client writes into the records of what it holds.
func (c *Client) ID() string { return c.cfg.ID }

// Config returns the configuration in effect (defaults filled in).
func (c *Client) Config() Config { return c.cfg }

// Bucket is the name of the key-value bucket of the Client's namespace.
func (c *Client) Bucket() string { return c.bucket }

// Close ends every lease the Client holds (their keys are deleted, best
// effort, so that others need not wait for the TTL) and closes the
// connection. Later calls return net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	ls := make([]*Lease, 0, len(c.leases))
	for l := range c.leases {
		ls = append(ls, l)
	}
	c.mu.Unlock()
	for _, l := range ls {
		_ = l.Release(context.Background())
	}
	close(c.closing)
	c.wg.Wait()
	c.nc.Close()
	return nil
}

func (c *Client) isClosed() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// reqCtx bounds a request the caller's context does not bound.
func (c *Client) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
}

// subject is the stream subject of a key of the bucket.
func (c *Client) subject(key string) string { return "$KV." + c.bucket + "." + key }

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// transient reports whether err may go away by trying again (the server
// unreachable for a moment, a cluster electing a leader).
func transient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, jetstream.ErrKeyExists),
		errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, jetstream.ErrInvalidKey):
		return false
	}
	return true
}
