package mq

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/natstest"
)

func init() { peers["mq-js-publisher"] = peerJSPublisher }

// peerJSPublisher publishes args[2] messages with ids "<args[1]>-<k>" to
// stream R at the servers args[0] (tried in that order), retrying each
// until acknowledged, and appends "<id> <seq>" to the file args[3] for
// every acknowledgement as it comes.
func peerJSPublisher(args []string) int {
	url, prefix := args[0], args[1]
	n, _ := strconv.Atoi(args[2])
	f, err := os.OpenFile(args[3], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := Open(ctx, url, &Config{NATSOptions: []nats.Option{
		nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}})
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer q.Close()
	fmt.Println("ready")
	retries := 0
	for k := range n {
		id := fmt.Sprintf("%s-%d", prefix, k)
		for try := 0; ; try++ {
			pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			pa, err := q.Publish(pctx, "R", []byte(id), &PublishOptions{ID: id})
			cancel()
			if err == nil {
				if _, err := fmt.Fprintf(f, "%s %d\n", id, pa.Seq); err != nil {
					return ipctest.Fail("%v", err)
				}
				break
			}
			if try == 200 {
				return ipctest.Fail("publish %s: %v", id, err)
			}
			retries++
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Println("done", retries)
	return 0
}

// TestJetStreamClusterKillLeader: a three-node cluster on loopback, a stream
// of three replicas, two publisher processes and a consumer group; the
// stream's leader, which one publisher is connected to, is stopped mid-load.
// Every acknowledged publish must be in the stream afterwards, once (dedupe
// by id across retries), and be consumed by the group (at least once).
func TestJetStreamClusterKillLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster takes seconds to start and to elect")
	}
	const perPeer = 1500
	cl := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q, err := Open(ctx, cl.URL(), &Config{NATSOptions: []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.CreateStream(ctx, StreamConfig{Name: "R", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CreateGroup(ctx, "R", GroupConfig{Name: "g", AckWait: 3 * time.Second, MaxDeliver: -1}); err != nil {
		t.Fatal(err)
	}
	leader := streamLeader(t, cl, "MQ_R")
	other := (leader + 1) % 3
	urls := func(first int) string {
		us := []string{cl.Servers[first].URL()}
		for i, s := range cl.Servers {
			if i != first {
				us = append(us, s.URL())
			}
		}
		return strings.Join(us, ",")
	}

	// The consumer runs through the whole test, acking what it gets.
	var mu sync.Mutex
	consumed := map[string]int{}
	stop := make(chan struct{})
	consumerDone := make(chan error, 1)
	go func() {
		c, err := q.Consumer(ctx, "R", "g")
		if err != nil {
			consumerDone <- err
			return
		}
		defer c.Close()
		for {
			select {
			case <-stop:
				consumerDone <- nil
				return
			default:
			}
			fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			ds, err := c.Fetch(fctx, 64)
			cancel()
			if err != nil {
				continue // a timeout, or the cluster failing over
			}
			for _, d := range ds {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if d.Ack(actx) == nil {
					mu.Lock()
					consumed[string(d.Data)]++
					mu.Unlock()
				}
				cancel()
			}
		}
	}()

	dir := t.TempDir()
	files := []string{filepath.Join(dir, "p0.acks"), filepath.Join(dir, "p1.acks")}
	pubs := []*ipctest.Peer{
		ipctest.StartPeer(t, "mq-js-publisher", urls(leader), "p0", strconv.Itoa(perPeer), files[0]),
		ipctest.StartPeer(t, "mq-js-publisher", urls(other), "p1", strconv.Itoa(perPeer), files[1]),
	}
	for _, p := range pubs {
		p.Expect(t, "ready", 30*time.Second)
	}
	// Mid-load: stop the stream leader, the server publisher p0 is on.
	for n := 0; n < perPeer/2; n = len(readAcks(t, files[0])) {
		select {
		case <-pubs[0].Done():
			t.Fatal("publisher p0 ended before the server was stopped")
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Logf("stopping server %d (the stream leader) after %d acknowledged publishes of p0", leader, len(readAcks(t, files[0])))
	cl.Stop(leader)
	for i, p := range pubs {
		if err := p.Wait(t, 60*time.Second); err != nil {
			t.Fatalf("publisher: %v", err)
		}
		t.Logf("publisher p%d: %s (publishes retried)", i, p.Line(t, time.Second))
	}
	acked := readAcks(t, files[0])
	for id, seq := range readAcks(t, files[1]) {
		acked[id] = seq
	}
	nAcked := len(acked)
	if nAcked != 2*perPeer {
		t.Fatalf("%d publishes acknowledged, want %d", nAcked, 2*perPeer)
	}
	t.Logf("new stream leader: server %d", streamLeader(t, cl, "MQ_R"))

	// Every acknowledged publish is stored, once, at the sequence its ack named.
	stored := map[string]uint64{}
	for seq := uint64(0); ; {
		ms, err := q.Read(ctx, "R", seq, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			if prev, dup := stored[m.ID]; dup {
				t.Errorf("id %s stored twice, at %d and %d", m.ID, prev, m.Seq)
			}
			stored[m.ID] = m.Seq
			seq = m.Seq + 1
		}
	}
	for id, seq := range acked {
		if s, ok := stored[id]; !ok {
			t.Errorf("acknowledged %s (seq %d) is not in the stream", id, seq)
		} else if s != seq {
			t.Errorf("acknowledged %s at seq %d, stored at %d", id, seq, s)
		}
	}
	// And the group consumes every one of them.
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for id := range acked {
			if consumed[id] == 0 {
				missing++
			}
		}
		redelivered := 0
		for _, n := range consumed {
			redelivered += n - 1
		}
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d acknowledged, %d stored, all consumed (%d consumed more than once)", nAcked, len(stored), redelivered)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged publishes never consumed", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	if err := <-consumerDone; err != nil {
		t.Fatal(err)
	}
}

// readAcks reads a publisher's file of acknowledgements: id → sequence.
func readAcks(t *testing.T, file string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue // the last line, maybe still being written
		}
		seq, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("%s: line %q", file, l)
		}
		out[f[0]] = seq
	}
	return out
}

// streamLeader returns the index of the server leading a stream.
func streamLeader(t *testing.T, cl *natstest.Cluster, stream string) int {
	t.Helper()
	nc, err := nats.Connect(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			for i, srv := range cl.Servers {
				if srv.Running() && srv.Name() == s.CachedInfo().Cluster.Leader {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no leader for stream %s", stream)
	return -1
}
