package mq

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipcgo/ipc/internal/natsserver"
	"github.com/ipcgo/ipc/internal/natstest"
)

// The JetStream backend runs every conformance case against a real
// embedded nats-server with JetStream, a fresh one (and a fresh store
// directory) per case.
func init() {
	conformanceBackends = append(conformanceBackends, conformanceBackend{
		name: "jetstream",
		setup: func(t *testing.T) string {
			return natstest.Start(t, nil).URL()
		},
	})
}

func jsOpen(t *testing.T, url string, cfg *Config) *Queue {
	t.Helper()
	q, err := Open(semCtx(t, 10*time.Second), url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func jsRaw(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The names mq gives JetStream's streams, subjects and consumers are the
// documented ones, so that other NATS clients can use them.
func TestJetStreamMapping(t *testing.T) {
	s := natstest.Start(t, nil)
	q := jsOpen(t, s.URL(), nil)
	semStream(t, q, StreamConfig{Name: "S", MaxMsgs: 10, Replicas: 1})
	semGroup(t, q, "S", GroupConfig{Name: "g", AckWait: 2 * time.Second, MaxDeliver: 3, Backoff: []time.Duration{time.Second}})
	semGroup(t, q, "S", GroupConfig{Name: "o", OrderedByKey: true})
	semPub(t, q, "S", "x", &PublishOptions{Priority: 2, Key: "k"})
	js := jsRaw(t, s.URL())
	ctx := semCtx(t, 10*time.Second)
	st, err := js.Stream(ctx, "MQ_S")
	if err != nil {
		t.Fatal(err)
	}
	sc := st.CachedInfo().Config
	if fmt.Sprint(sc.Subjects) != "[mq.S.>]" || sc.MaxMsgs != 10 || sc.Retention != jetstream.LimitsPolicy || !sc.AllowMsgSchedules {
		t.Fatalf("stream config %+v", sc)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil || m.Subject != "mq.S.p2.m" || m.Header.Get("Mq-Key") != "k" {
		t.Fatalf("stored as %+v, %v", m, err)
	}
	for b := range MaxPriority + 1 {
		cons, err := st.Consumer(ctx, fmt.Sprintf("g_p%d", b))
		if err != nil {
			t.Fatal(err)
		}
		cc := cons.CachedInfo().Config
		if cc.FilterSubject != fmt.Sprintf("mq.S.p%d.>", b) || cc.MaxDeliver != 4 || cc.AckWait != 3*time.Second ||
			fmt.Sprint(cc.BackOff) != "[3s]" || cc.AckPolicy != jetstream.AckExplicitPolicy {
			t.Fatalf("consumer g_p%d: %+v", b, cc)
		}
	}
	cons, err := st.Consumer(ctx, "o_pa")
	if err != nil || cons.CachedInfo().Config.MaxAckPending != 1 || len(cons.CachedInfo().Config.FilterSubjects) != 4 {
		t.Fatalf("ordered group's consumer: %+v %v", cons, err)
	}
}

// A message terminated by another NATS client (not through mq) reaches
// the dead-letter stream through the MSG_TERMINATED advisory, which a
// consumer handle of the group is subscribed to; so does one JetStream
// gave up on (MAX_DELIVERIES) after a client outside mq let its attempts
// run out.
func TestJetStreamDeadLetterAdvisories(t *testing.T) {
	s := natstest.Start(t, nil)
	q := jsOpen(t, s.URL(), nil)
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", MaxDeliver: 1, AckWait: 300 * time.Millisecond, DeadLetter: "DLQ"})
	a := semPub(t, q, "S", "termed", nil)
	b := semPub(t, q, "S", "expired", nil)
	js := jsRaw(t, s.URL())
	ctx := semCtx(t, 20*time.Second)
	raw, err := js.Consumer(ctx, "MQ_S", "g_p0")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := raw.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("raw fetch got %d", len(got))
	}
	if err := got[0].TermWithReason("not wanted"); err != nil {
		t.Fatal(err)
	}
	// The second one: its attempt and the one JetStream adds run out.
	batch, err = raw.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	ms := semDead(t, q, "DLQ", 2, func() {
		if d, err := c.Next(semCtx(t, 200*time.Millisecond)); err == nil {
			t.Fatalf("mq delivered %q (attempt %d) past MaxDeliver", d.Data, d.Attempt)
		}
	})
	if ms[0].Header.Get(HeaderDeadSeq) != strconv.FormatUint(a.Seq, 10) {
		ms[0], ms[1] = ms[1], ms[0]
	}
	semCheckDead(t, ms[0], "termed", "S", "g", a.Seq, "terminated", 1)
	semCheckDead(t, ms[1], "expired", "S", "g", b.Seq, "max-deliver", 1)
}

// Messages and group state survive a restart of the server (SyncAlways:
// every write fsynced before it is acknowledged).
func TestJetStreamServerRestart(t *testing.T) {
	s := natstest.Start(t, &natsserver.Config{SyncAlways: true})
	q := jsOpen(t, s.URL(), nil)
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g"})
	for i := range 5 {
		semPub(t, q, "S", strconv.Itoa(i), &PublishOptions{ID: strconv.Itoa(i)})
	}
	for range 2 {
		semAck(t, semNext(t, c, 10*time.Second))
	}
	q.Close()
	s = natstest.Restart(t, s)
	q = jsOpen(t, s.URL(), nil)
	if pa := semPub(t, q, "S", "4", &PublishOptions{ID: "4"}); !pa.Duplicate {
		t.Fatalf("dedupe window lost in the restart: %+v", pa)
	}
	c = semConsumer(t, q, "S", "g")
	for i := 2; i < 5; i++ {
		d := semNext(t, c, 10*time.Second)
		if string(d.Data) != strconv.Itoa(i) || d.Attempt != 1 {
			t.Fatalf("after restart %q attempt %d, want %d attempt 1", d.Data, d.Attempt, i)
		}
		semAck(t, d)
	}
	semNone(t, c, 200*time.Millisecond)
}

// Open: Config.NATSOptions reach the connection; a server that is not
// there, or has no JetStream, is a clear error.
func TestJetStreamOpen(t *testing.T) {
	s := natstest.Start(t, nil)
	closed := make(chan struct{})
	q := jsOpen(t, s.URL(), &Config{Name: "worker-1", NATSOptions: []nats.Option{nats.ClosedHandler(func(*nats.Conn) { close(closed) })}})
	if q.Backend() != "nats" || q.Addr() != s.URL() {
		t.Fatalf("backend %q addr %q", q.Backend(), q.Addr())
	}
	q.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the ClosedHandler given in NATSOptions was not called")
	}
	ports, err := natsserver.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(semCtx(t, 5*time.Second), fmt.Sprintf("nats://127.0.0.1:%d", ports[0]), nil); err == nil {
		t.Fatal("Open of an address with no server succeeded")
	}
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go plain.Start()
	defer func() { plain.Shutdown(); plain.WaitForShutdown() }()
	if !plain.ReadyForConnections(10 * time.Second) {
		t.Fatal("plain server not ready")
	}
	if _, err := Open(semCtx(t, 5*time.Second), plain.ClientURL(), nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Open of a server without JetStream: %v, want ErrUnsupported", err)
	}
}

// A message above the server's max_payload is refused by the client
// library: ErrTooLarge, and nothing is stored.
func TestJetStreamTooLarge(t *testing.T) {
	s := natstest.Start(t, nil)
	q := jsOpen(t, s.URL(), nil)
	semStream(t, q, StreamConfig{Name: "S", MaxMsgSize: 32 << 20})
	if _, err := q.Publish(semCtx(t, 10*time.Second), "S", make([]byte, 9<<20), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("9 MiB message: %v, want ErrTooLarge", err)
	}
	if si, err := q.StreamInfo(semCtx(t, 10*time.Second), "S"); err != nil || si.Msgs != 0 {
		t.Fatalf("%+v %v", si, err)
	}
}
