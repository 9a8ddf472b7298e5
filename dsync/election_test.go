package dsync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
	"github.com/ipcgo/ipc/internal/natstest"
)

// peerCampaign campaigns in election args[2] with value args[3], says
// "leader TOKEN" once it leads and waits to be killed.
func peerCampaign(args []string) int {
	c, err := peerOpen(args)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	e, err := c.Election(args[2])
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := e.Campaign(ctx, []byte(args[3]))
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	fmt.Printf("leader %d\n", l.Token())
	time.Sleep(time.Minute)
	return 0
}

func mustElection(t testing.TB, c *Client, name string) *Election {
	t.Helper()
	return must[*Election](t)(c.Election(name))
}

// campaign campaigns in the background; the result comes on the channels.
func campaign(ctx context.Context, e *Election, value string) (<-chan *Lease, <-chan error) {
	got := make(chan *Lease, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := e.Campaign(ctx, []byte(value))
		errc <- err
		got <- l
	}()
	return got, errc
}

// next reads the next leader from an Observe channel.
func next(t *testing.T, ch <-chan Leader, d time.Duration) Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe channel closed")
		}
		return l
	case <-time.After(d):
		t.Fatalf("no leader observed within %v", d)
	}
	return Leader{}
}

func TestElection(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	ea, eb := mustElection(t, a, "svc"), mustElection(t, b, "svc")
	if _, err := eb.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader with no candidate: %v, want ErrNoLeader", err)
	}
	if err := eb.Resign(ctx); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Resign without campaigning: %v, want ErrNotHeld", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	obs := eb.Observe(octx)

	la, err := ea.Campaign(ctx, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if o := next(t, obs, 10*time.Second); o.Token != la.Token() || string(o.Value) != "a" || o.Holder != a.ID() {
		t.Fatalf("observed %+v, want a's term %d", o, la.Token())
	}
	got, errc := campaign(ctx, eb, "b")
	// b's candidacy does not displace a: a is still the leader once b's
	// key exists (seen by a third candidate that gives up at once).
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if _, err := mustElection(t, a, "svc").Campaign(short, []byte("c")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third candidate: %v, want it to wait until its deadline", err)
	}
	if ld, err := eb.Leader(ctx); err != nil || ld.Token != la.Token() || string(ld.Value) != "a" {
		t.Fatalf("Leader: %+v, %v; want a", ld, err)
	}
	select {
	case err := <-errc:
		t.Fatalf("b's Campaign returned while a leads: %v", err)
	default:
	}
	if err := ea.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	lb := <-got
	if lb.Token() <= la.Token() {
		t.Fatalf("term %d after %d", lb.Token(), la.Token())
	}
	if o := next(t, obs, 10*time.Second); o.Token != lb.Token() || string(o.Value) != "b" {
		t.Fatalf("observed %+v, want b's term %d", o, lb.Token())
	}
	ocancel()
	for range obs { // closed when its context ends
	}
	if err := eb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader after every candidate resigned: %v", err)
	}
	if _, err := ea.Campaign(ctx, make([]byte, MaxValue+1)); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("oversized value: %v", err)
	}
}

// The leader is killed with SIGKILL: the next candidate is elected with a
// larger term once the dead leader's TTL has passed, and an observer sees
// both leaders in order.
func TestElectionLeaderKilled(t *testing.T) {
	s := natstest.Start(t, nil)
	c := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 60*time.Second)
	e := mustElection(t, c, "k")
	obs := e.Observe(ctx)
	p := ipctest.StartPeer(t, "campaign", s.URL(), "t", "k", "peer")
	f := strings.Fields(p.Line(t, 30*time.Second))
	if len(f) != 2 || f[0] != "leader" {
		t.Fatalf("peer said %q", f)
	}
	peerTerm, _ := strconv.ParseUint(f[1], 10, 64)
	if o := next(t, obs, 10*time.Second); o.Token != peerTerm || string(o.Value) != "peer" {
		t.Fatalf("observed %+v, want the peer's term %d", o, peerTerm)
	}
	got, errc := campaign(ctx, e, "me")
	time.Sleep(200 * time.Millisecond) // let the candidacy exist (the test holds without it)
	p.Kill()
	killed := time.Now()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	l := <-got
	t.Logf("elected %v after the leader was killed (TTL %v)", time.Since(killed), c.Config().TTL)
	if l.Token() <= peerTerm {
		t.Fatalf("term %d after the dead leader's %d", l.Token(), peerTerm)
	}
	if o := next(t, obs, 10*time.Second); o.Token != l.Token() || string(o.Value) != "me" {
		t.Fatalf("observed %+v, want the new term %d", o, l.Token())
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// A candidate whose context ends withdraws; the candidates behind it move
// up.
func TestCampaignCancelled(t *testing.T) {
	s := natstest.Start(t, nil)
	a := open(t, s.URL(), testConfig("t"))
	b := open(t, s.URL(), testConfig("t"))
	ctx := ctxT(t, 30*time.Second)
	la, err := mustElection(t, a, "w").Campaign(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := mustElection(t, b, "w").Campaign(short, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign past its deadline: %v", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mustElection(t, b, "w").Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("the withdrawn candidacy is still there: %v", err)
	}
}
