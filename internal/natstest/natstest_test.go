package natstest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ipcgo/ipc/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func publishAndRead(t *testing.T, url, stream string, replicas int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A request that reaches the cluster while its meta leader changes can
	// go unanswered: each attempt gets 5 s, and the whole 30 s.
	var st jetstream.Stream
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		st, err = js.CreateStream(actx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Replicas: replicas})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("create stream %s: %v", stream, err)
		}
		t.Logf("create stream %s: %v; trying again", stream, err)
	}
	ack, err := js.Publish(ctx, stream+".x", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("stored %q, want hello", msg.Data)
	}
}

func TestStartAndRestart(t *testing.T) {
	s := natstest.Start(t, nil)
	publishAndRead(t, s.URL(), "T", 1)
	port := s.Port()
	s = natstest.Restart(t, s)
	if s.Port() != port {
		t.Fatalf("restarted at port %d, want %d", s.Port(), port)
	}
	// The store survives the restart.
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after restart the stream has %d messages, want 1", n)
	}
}

func TestClusterReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up takes seconds")
	}
	c := natstest.StartCluster(t, 3)
	publishAndRead(t, c.URL(), "R3", 3)
	c.Stop(0)
	c.WaitLeader(t, 30*time.Second)
	publishAndRead(t, c.URL(), "R1", 1) // a new stream, on the two members left
	c.Restart(0)
	c.WaitLeader(t, 30*time.Second)
}
