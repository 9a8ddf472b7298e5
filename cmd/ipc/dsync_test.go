package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/dsync"
	"github.com/ipcgo/ipc/internal/natstest"
)

func openDsync(t *testing.T, url, ns, id string) *dsync.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dsync.Open(ctx, url, &dsync.Config{Namespace: ns, TTL: 5 * time.Second, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestDsyncLs(t *testing.T) {
	s := natstest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if code, out, _ := run(t, 20*time.Second, "dsync", "ls", s.URL()); code != 0 || !strings.Contains(out, "nothing held") {
		t.Fatalf("ls of an empty server: exit %d, %q", code, out)
	}
	a, b := openDsync(t, s.URL(), "ls1", "client-a"), openDsync(t, s.URL(), "ls2", "client-b")
	c := openDsync(t, s.URL(), "ls1", "client-c")
	mu, _ := a.Mutex("orders")
	lock, err := mu.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sem, _ := b.Semaphore("pool", 3)
	permit, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ea, _ := a.Election("svc")
	ec, _ := c.Election("svc")
	term, err := ea.Campaign(ctx, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	waiting := make(chan error, 1)
	go func() { _, err := ec.Campaign(cctx, []byte("c")); waiting <- err }()
	defer func() { ccancel(); <-waiting }()
	for { // until b's candidacy is there
		hs, err := dsync.Inspect(ctx, s.URL(), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 4 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Inspect shows %d holdings, want 4", len(hs))
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, out, _ := run(t, 20*time.Second, "dsync", "ls", s.URL(), "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		Holdings []dsync.Holding `json:"holdings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	hs := res.Holdings
	if len(hs) != 4 {
		t.Fatalf("%d holdings, want 4: %+v", len(hs), hs)
	}
	// Sorted by namespace then key: ls1 elect (two, in the random order of
	// their keys), ls1 mutex, ls2 sem.
	if hs[0].Holder == "client-c" {
		hs[0], hs[1] = hs[1], hs[0]
	}
	now := time.Now()
	want := []struct {
		ns, kind, name, holder string
		token                  uint64
		leader                 bool
	}{
		{"ls1", "election", "svc", "client-a", term.Token(), true},
		{"ls1", "election", "svc", "client-c", 0, false},
		{"ls1", "mutex", "orders", "client-a", lock.Token(), false},
		{"ls2", "semaphore", "pool", "client-b", permit.Token(), false},
	}
	for i, w := range want {
		h := hs[i]
		if h.Namespace != w.ns || h.KindName != w.kind || h.Name != w.name || h.Holder != w.holder || h.Leader != w.leader ||
			(w.token != 0 && h.Token != w.token) {
			t.Errorf("holding %d: %+v, want %+v", i, h, w)
		}
		if !h.Expires.After(now) || h.Expires.After(now.Add(6*time.Second)) {
			t.Errorf("holding %d expires %v from now (TTL 5 s)", i, h.Expires.Sub(now))
		}
	}
	if hs[3].Permit != permit.Permit() || hs[3].Size != 3 || hs[2].Permit != -1 {
		t.Errorf("permits: %+v", hs)
	}
	if string(hs[0].Value) != "a" || string(hs[1].Value) != "c" || hs[1].Token <= hs[0].Token {
		t.Errorf("candidates: %+v", hs[:2])
	}
	code, out, _ = run(t, 20*time.Second, "dsync", "ls", s.URL(), "--namespace", "ls1")
	if code != 0 || !strings.Contains(out, "orders") || strings.Contains(out, "pool") || !strings.Contains(out, "yes") {
		t.Fatalf("ls --namespace ls1: exit %d\n%s", code, out)
	}
	if code, _, errOut := run(t, 20*time.Second, "dsync", "ls", "nats://127.0.0.1:1"); code != exitFailure || errOut == "" {
		t.Fatalf("ls of a closed port: exit %d, %q", code, errOut)
	}
	if code, _, _ := run(t, 20*time.Second, "dsync", "ls"); code != exitUsage {
		t.Fatalf("ls without an address: exit %d", code)
	}
	if code, _, _ := run(t, 20*time.Second, "dsync", "ls", s.URL(), "--namespace", "a.b"); code != exitFailure {
		t.Fatalf("ls of a bad namespace: exit %d", code)
	}
}

// assertNoBuckets fails t if a bucket of a race run is left on the server.
func assertNoBuckets(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := js.KeyValueStoreNames(ctx)
	for b := range l.Name() {
		if strings.Contains(b, "ipc_race_") {
			t.Errorf("bucket %s left behind", b)
		}
	}
	if err := l.Error(); err != nil {
		t.Fatal(err)
	}
}
