package mq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"
)

// The core conformance cases: the documented semantics of the queue API,
// run over every backend.

func init() {
	conformanceCases = append(conformanceCases,
		conformanceCase{"PublishReadSeq", testPublishReadSeq},
		conformanceCase{"Dedupe", testDedupe},
		conformanceCase{"Delay", testDelay},
		conformanceCase{"Priority", testPriority},
		conformanceCase{"GroupsFanOut", testGroupsFanOut},
		conformanceCase{"CompetingConsumers", testCompetingConsumers},
		conformanceCase{"AckNakTermInProgress", testSettle},
		conformanceCase{"AckWaitRedelivery", testAckWait},
		conformanceCase{"MaxDeliverDeadLetter", testMaxDeliver},
		conformanceCase{"Replay", testReplay},
		conformanceCase{"OrderedByKey", testOrderedByKey},
		conformanceCase{"RetentionLimits", testRetentionLimits},
		conformanceCase{"WorkQueue", testWorkQueue},
		conformanceCase{"GroupInfoCounters", testGroupInfo},
		conformanceCase{"Closed", testClosed},
		conformanceCase{"BadNames", testBadNames},
		conformanceCase{"NotFound", testNotFound},
		conformanceCase{"TooLarge", testTooLarge},
		conformanceCase{"Exists", testExists},
		conformanceCase{"NextTimeout", testNextTimeout},
		conformanceCase{"Reopen", testReopen},
	)
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustStream(t *testing.T, q *Queue, c StreamConfig) {
	t.Helper()
	if _, err := q.CreateStream(tctx(t), c); err != nil {
		t.Fatalf("CreateStream %s: %v", c.Name, err)
	}
}

func mustGroup(t *testing.T, q *Queue, stream string, c GroupConfig) *Consumer {
	t.Helper()
	if _, err := q.CreateGroup(tctx(t), stream, c); err != nil {
		t.Fatalf("CreateGroup %s/%s: %v", stream, c.Name, err)
	}
	cons, err := q.Consumer(tctx(t), stream, c.Name)
	if err != nil {
		t.Fatalf("Consumer %s/%s: %v", stream, c.Name, err)
	}
	t.Cleanup(func() { cons.Close() })
	return cons
}

func mustPub(t *testing.T, q *Queue, stream, data string, o *PublishOptions) PubAck {
	t.Helper()
	pa, err := q.Publish(tctx(t), stream, []byte(data), o)
	if err != nil {
		t.Fatalf("Publish %s %q: %v", stream, data, err)
	}
	return pa
}

func mustNext(t *testing.T, c *Consumer, d time.Duration) *Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	dl, err := c.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return dl
}

// noNext asserts that nothing is delivered within d.
func noNext(t *testing.T, c *Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if dl, err := c.Next(ctx); err == nil {
		t.Fatalf("Next delivered seq %d %q, want nothing", dl.Seq, dl.Data)
	}
}

func mustAck(t *testing.T, d *Delivery) {
	t.Helper()
	if err := d.Ack(tctx(t)); err != nil {
		t.Fatalf("Ack seq %d: %v", d.Seq, err)
	}
}

func testPublishReadSeq(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	for i := 1; i <= 3; i++ {
		pa := mustPub(t, q, "s", fmt.Sprint("m", i), &PublishOptions{Header: Header{"A": {"x", "y"}}, Key: "k", Priority: 2})
		if pa.Seq != uint64(i) || pa.Duplicate || pa.Stream != "s" {
			t.Fatalf("publish %d: %+v", i, pa)
		}
	}
	ms, err := q.Read(tctx(t), "s", 0, 10)
	if err != nil || len(ms) != 3 {
		t.Fatalf("Read: %d messages, %v", len(ms), err)
	}
	for i, m := range ms {
		if m.Seq != uint64(i+1) || string(m.Data) != fmt.Sprint("m", i+1) || m.Key != "k" || m.Priority != 2 ||
			len(m.Header["A"]) != 2 || m.Header["A"][1] != "y" || m.Published.IsZero() || m.Stream != "s" {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	ms, err = q.Read(tctx(t), "s", 2, 1)
	if err != nil || len(ms) != 1 || ms[0].Seq != 2 {
		t.Fatalf("Read(2, 1): %+v %v", ms, err)
	}
	si, err := q.StreamInfo(tctx(t), "s")
	if err != nil || si.Msgs != 3 || si.FirstSeq != 1 || si.LastSeq != 3 || si.Bytes == 0 {
		t.Fatalf("StreamInfo: %+v %v", si, err)
	}
	ss, err := q.Streams(tctx(t))
	if err != nil || len(ss) != 1 || ss[0].Config.Name != "s" {
		t.Fatalf("Streams: %+v %v", ss, err)
	}
	if _, err := q.Read(tctx(t), "s", 0, 0); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("Read n=0: %v", err)
	}
	if err := q.DeleteStream(tctx(t), "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.StreamInfo(tctx(t), "s"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("StreamInfo after delete: %v", err)
	}
}

func testDedupe(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s", DuplicateWindow: time.Minute})
	a := mustPub(t, q, "s", "one", &PublishOptions{ID: "id-1"})
	mustPub(t, q, "s", "other", &PublishOptions{ID: "id-2"})
	b := mustPub(t, q, "s", "one again", &PublishOptions{ID: "id-1"})
	if !b.Duplicate || b.Seq != a.Seq || a.Duplicate {
		t.Fatalf("first %+v, second %+v", a, b)
	}
	q2 := env.Open(t) // another handle sees the same window
	if c := mustPub(t, q2, "s", "x", &PublishOptions{ID: "id-2"}); !c.Duplicate || c.Seq != 2 {
		t.Fatalf("other handle: %+v", c)
	}
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 2 {
		t.Fatalf("Msgs %d, want 2", si.Msgs)
	}
	mustStream(t, q, StreamConfig{Name: "w", DuplicateWindow: 100 * time.Millisecond})
	mustPub(t, q, "w", "a", &PublishOptions{ID: "x"})
	time.Sleep(250 * time.Millisecond)
	if p := mustPub(t, q, "w", "b", &PublishOptions{ID: "x"}); p.Duplicate {
		t.Fatalf("after the window: %+v", p)
	}
}

func testDelay(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	start := time.Now()
	mustPub(t, q, "s", "later", &PublishOptions{Delay: 400 * time.Millisecond})
	mustPub(t, q, "s", "at", &PublishOptions{At: time.Now().Add(200 * time.Millisecond)})
	mustPub(t, q, "s", "now", nil)
	d := mustNext(t, c, 5*time.Second)
	if string(d.Data) != "now" {
		t.Fatalf("first delivery %q, want now", d.Data)
	}
	mustAck(t, d)
	d = mustNext(t, c, 5*time.Second)
	if string(d.Data) != "at" || time.Since(start) < 200*time.Millisecond || d.NotBefore.IsZero() {
		t.Fatalf("second delivery %q after %v", d.Data, time.Since(start))
	}
	mustAck(t, d)
	d = mustNext(t, c, 5*time.Second)
	if string(d.Data) != "later" || time.Since(start) < 400*time.Millisecond {
		t.Fatalf("third delivery %q after %v", d.Data, time.Since(start))
	}
	mustAck(t, d)
}

func testPriority(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	for i, p := range []int{0, 1, 3, 0, 2} {
		mustPub(t, q, "s", fmt.Sprint(i), &PublishOptions{Priority: p})
	}
	var got []int
	for range 5 {
		d := mustNext(t, c, 5*time.Second)
		got = append(got, d.Priority)
		mustAck(t, d)
	}
	if fmt.Sprint(got) != "[3 2 1 0 0]" {
		t.Fatalf("priorities delivered %v, want [3 2 1 0 0]", got)
	}
}

func testGroupsFanOut(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c1 := mustGroup(t, q, "s", GroupConfig{Name: "g1"})
	c2 := mustGroup(t, q, "s", GroupConfig{Name: "g2"})
	for i := range 5 {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	for _, c := range []*Consumer{c1, c2} {
		for i := range 5 {
			d := mustNext(t, c, 5*time.Second)
			if string(d.Data) != fmt.Sprint(i) || d.Attempt != 1 {
				t.Fatalf("group %s: delivery %d is %q attempt %d", d.Group, i, d.Data, d.Attempt)
			}
			mustAck(t, d)
		}
		noNext(t, c, 100*time.Millisecond)
	}
	si, _ := q.StreamInfo(tctx(t), "s")
	if fmt.Sprint(si.Groups) != "[g1 g2]" {
		t.Fatalf("Groups %v", si.Groups)
	}
}

func testCompetingConsumers(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c1 := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	q2 := env.Open(t)
	c2, err := q2.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	const n = 60
	for i := range n {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	var wg sync.WaitGroup
	for _, c := range []*Consumer{c1, c2} {
		wg.Go(func() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				ds, err := c.Fetch(ctx, 4)
				cancel()
				if err != nil {
					return
				}
				for _, d := range ds {
					mu.Lock()
					seen[d.Seq]++
					mu.Unlock()
					if err := d.Ack(context.Background()); err != nil {
						t.Errorf("ack: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct messages delivered, want %d", len(seen), n)
	}
	for s, k := range seen {
		if k != 1 {
			t.Fatalf("seq %d delivered %d times", s, k)
		}
	}
}

func testSettle(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: 2 * time.Second, DeadLetter: "dl"})
	mustPub(t, q, "s", "a", nil)
	d := mustNext(t, c, 5*time.Second)
	if err := d.Nak(tctx(t), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(tctx(t)); !errors.Is(err, ErrAcked) {
		t.Fatalf("ack after nak: %v", err)
	}
	d = mustNext(t, c, 5*time.Second)
	if d.Attempt != 2 || string(d.Data) != "a" {
		t.Fatalf("after nak: attempt %d %q", d.Attempt, d.Data)
	}
	before := d.Deadline
	time.Sleep(20 * time.Millisecond)
	if err := d.InProgress(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if !d.Deadline.After(before) {
		t.Fatalf("InProgress left the deadline at %v", d.Deadline)
	}
	if err := d.Term(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := d.InProgress(tctx(t)); !errors.Is(err, ErrAcked) {
		t.Fatalf("InProgress after Term: %v", err)
	}
	noNext(t, c, 150*time.Millisecond)
	ms := waitRead(t, q, "dl", 1)
	h := ms[0].Header
	if h.Get(HeaderDeadReason) != "terminated" || h.Get(HeaderDeadStream) != "s" || h.Get(HeaderDeadGroup) != "g" ||
		h.Get(HeaderDeadSeq) != "1" || h.Get(HeaderDeadAttempts) != "2" || string(ms[0].Data) != "a" {
		t.Fatalf("dead letter %+v", ms[0])
	}
	mustPub(t, q, "s", "b", nil)
	d = mustNext(t, c, 5*time.Second)
	if err := d.Nak(tctx(t), -1); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("negative nak: %v", err)
	}
	mustAck(t, d)
	if err := d.Ack(tctx(t)); !errors.Is(err, ErrAcked) {
		t.Fatalf("second ack: %v", err)
	}
	noNext(t, c, 150*time.Millisecond)
}

// waitRead waits until stream holds at least n messages and returns them.
func waitRead(t *testing.T, q *Queue, stream string, n int) []StoredMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := q.Read(tctx(t), stream, 0, 100)
		if err == nil && len(ms) >= n {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages (%v), want %d", stream, len(ms), err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testAckWait(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: 300 * time.Millisecond})
	mustPub(t, q, "s", "a", nil)
	d1 := mustNext(t, c, 5*time.Second)
	start := time.Now()
	d2 := mustNext(t, c, 5*time.Second)
	if d2.Seq != d1.Seq || d2.Attempt != 2 {
		t.Fatalf("redelivery: seq %d attempt %d", d2.Seq, d2.Attempt)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("redelivered after %v, before AckWait", el)
	}
	if err := d1.Ack(tctx(t)); !errors.Is(err, ErrDeliveryLost) {
		t.Fatalf("ack of the expired delivery: %v, want ErrDeliveryLost", err)
	}
	mustAck(t, d2)
	noNext(t, c, 500*time.Millisecond)
}

func testMaxDeliver(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", MaxDeliver: 2, DeadLetter: "dl", Backoff: []time.Duration{50 * time.Millisecond}})
	mustPub(t, q, "s", "poison", &PublishOptions{Header: Header{"X": {"1"}}, Key: "k", Priority: 1})
	for a := 1; a <= 2; a++ {
		d := mustNext(t, c, 5*time.Second)
		if d.Attempt != a {
			t.Fatalf("attempt %d, want %d", d.Attempt, a)
		}
		if err := d.Nak(tctx(t), 0); err != nil {
			t.Fatal(err)
		}
	}
	noNext(t, c, 200*time.Millisecond)
	ms := waitRead(t, q, "dl", 1)
	m := ms[0]
	if m.Header.Get(HeaderDeadReason) != "max-deliver" || m.Header.Get(HeaderDeadAttempts) != "2" ||
		m.Header.Get("X") != "1" || m.Key != "k" || m.Priority != 1 {
		t.Fatalf("dead letter %+v", m)
	}
	gi, err := q.GroupInfo(tctx(t), "s", "g")
	if err != nil || gi.DeadLettered != 1 || gi.Redelivered != 1 || gi.InFlight != 0 {
		t.Fatalf("GroupInfo %+v %v", gi, err)
	}
}

func testReplay(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", DeadLetter: "dl"})
	mustPub(t, q, "s", "x", &PublishOptions{Header: Header{"H": {"v"}}})
	d := mustNext(t, c, 5*time.Second)
	if err := d.Term(tctx(t)); err != nil {
		t.Fatal(err)
	}
	waitRead(t, q, "dl", 1)
	n, err := q.Replay(tctx(t), "dl", 10)
	if err != nil || n != 1 {
		t.Fatalf("Replay: %d %v", n, err)
	}
	if ms, _ := q.Read(tctx(t), "dl", 0, 10); len(ms) != 0 {
		t.Fatalf("dead-letter stream still holds %d", len(ms))
	}
	d = mustNext(t, c, 5*time.Second)
	if string(d.Data) != "x" || d.Attempt != 1 || d.Seq != 2 || d.Header.Get("H") != "v" || d.Header.Get(HeaderDeadReason) != "" {
		t.Fatalf("replayed delivery %+v", d.StoredMessage)
	}
	mustAck(t, d)
}

func testOrderedByKey(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", OrderedByKey: true})
	mustPub(t, q, "s", "a1", &PublishOptions{Key: "a"})
	mustPub(t, q, "s", "a2", &PublishOptions{Key: "a"})
	mustPub(t, q, "s", "b1", &PublishOptions{Key: "b"})
	mustPub(t, q, "s", "n1", nil)
	ds, err := c.Fetch(tctx(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, string(d.Data))
	}
	sort.Strings(got)
	if fmt.Sprint(got) != "[a1 b1 n1]" {
		t.Fatalf("first fetch %v, want [a1 b1 n1]", got)
	}
	noNext(t, c, 100*time.Millisecond)
	for _, d := range ds {
		if string(d.Data) == "a1" {
			mustAck(t, d)
		}
	}
	d := mustNext(t, c, 5*time.Second)
	if string(d.Data) != "a2" {
		t.Fatalf("after a1's ack: %q", d.Data)
	}
}

func testRetentionLimits(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "n", MaxMsgs: 3})
	for i := range 5 {
		mustPub(t, q, "n", fmt.Sprint(i), nil)
	}
	si, _ := q.StreamInfo(tctx(t), "n")
	if si.Msgs != 3 || si.FirstSeq != 3 || si.LastSeq != 5 {
		t.Fatalf("MaxMsgs: %+v", si)
	}
	ms, _ := q.Read(tctx(t), "n", 0, 10)
	if len(ms) != 3 || ms[0].Seq != 3 {
		t.Fatalf("Read after MaxMsgs: %d messages", len(ms))
	}
	mustStream(t, q, StreamConfig{Name: "b", MaxBytes: 1000})
	for range 20 {
		mustPub(t, q, "b", string(bytes.Repeat([]byte("x"), 100)), nil)
	}
	si, _ = q.StreamInfo(tctx(t), "b")
	if si.Bytes > 1000 || si.Msgs == 0 || si.Msgs >= 10 || si.LastSeq != 20 {
		t.Fatalf("MaxBytes: %+v", si)
	}
	mustStream(t, q, StreamConfig{Name: "a", MaxAge: 200 * time.Millisecond})
	mustPub(t, q, "a", "old", nil)
	time.Sleep(300 * time.Millisecond)
	mustPub(t, q, "a", "new", nil)
	ms, _ = q.Read(tctx(t), "a", 0, 10)
	if len(ms) != 1 || string(ms[0].Data) != "new" {
		t.Fatalf("MaxAge: %d messages", len(ms))
	}
}

func testWorkQueue(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s", Retention: WorkQueuePolicy})
	c1 := mustGroup(t, q, "s", GroupConfig{Name: "g1"})
	c2 := mustGroup(t, q, "s", GroupConfig{Name: "g2"})
	mustPub(t, q, "s", "a", nil)
	mustPub(t, q, "s", "b", nil)
	for range 2 {
		mustAck(t, mustNext(t, c1, 5*time.Second))
	}
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 2 {
		t.Fatalf("after one group acked: Msgs %d, want 2", si.Msgs)
	}
	mustAck(t, mustNext(t, c2, 5*time.Second))
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 1 {
		t.Fatalf("after both acked the first: Msgs %d, want 1", si.Msgs)
	}
	mustAck(t, mustNext(t, c2, 5*time.Second))
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 0 {
		t.Fatalf("after both acked both: %+v", si)
	}
}

func testGroupInfo(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g", AckWait: 10 * time.Second})
	for i := range 4 {
		mustPub(t, q, "s", fmt.Sprint(i), nil)
	}
	gi, err := q.GroupInfo(tctx(t), "s", "g")
	if err != nil || gi.Pending != 4 || gi.InFlight != 0 || gi.AckFloor != 0 || gi.OldestUnacked.IsZero() || gi.Stream != "s" || gi.Config.Name != "g" {
		t.Fatalf("before: %+v %v", gi, err)
	}
	d1 := mustNext(t, c, 5*time.Second)
	d2 := mustNext(t, c, 5*time.Second)
	mustAck(t, d1)
	if err := d2.Nak(tctx(t), 0); err != nil {
		t.Fatal(err)
	}
	d2 = mustNext(t, c, 5*time.Second)
	gi, _ = q.GroupInfo(tctx(t), "s", "g")
	if gi.Pending != 2 || gi.InFlight != 1 || gi.AckFloor != 1 || gi.Redelivered != 1 {
		t.Fatalf("after: %+v", gi)
	}
	mustAck(t, d2)
	for range 2 {
		mustAck(t, mustNext(t, c, 5*time.Second))
	}
	gi, _ = q.GroupInfo(tctx(t), "s", "g")
	if gi.Pending != 0 || gi.InFlight != 0 || gi.AckFloor != 4 || !gi.OldestUnacked.IsZero() {
		t.Fatalf("all acked: %+v", gi)
	}
	if err := q.DeleteGroup(tctx(t), "s", "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.GroupInfo(tctx(t), "s", "g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("after DeleteGroup: %v", err)
	}
}

func testClosed(t *testing.T, env *conformanceEnv) {
	q := env.Open(t)
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	mustPub(t, q, "s", "a", nil)
	d := mustNext(t, c, 5*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(tctx(t)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Next on a closed consumer: %v", err)
	}
	if err := d.Ack(tctx(t)); err == nil {
		t.Fatal("ack through a closed consumer succeeded")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Publish(tctx(t), "s", nil, nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Publish on a closed queue: %v", err)
	}
	if _, err := q.StreamInfo(tctx(t), "s"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("StreamInfo on a closed queue: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The released delivery goes to the next consumer.
	c2, err := env.Q.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if d := mustNext(t, c2, 5*time.Second); string(d.Data) != "a" || d.Attempt != 2 {
		t.Fatalf("after close: %q attempt %d", d.Data, d.Attempt)
	}
}

func testBadNames(t *testing.T, env *conformanceEnv) {
	q := env.Q
	for _, n := range []string{"", "a b", "a/b", "../x", string(bytes.Repeat([]byte("n"), 65))} {
		if _, err := q.CreateStream(tctx(t), StreamConfig{Name: n}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("CreateStream %q: %v", n, err)
		}
	}
	mustStream(t, q, StreamConfig{Name: "s"})
	if _, err := q.CreateGroup(tctx(t), "s", GroupConfig{Name: "a.b"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("CreateGroup a.b: %v", err)
	}
	if _, err := q.Publish(tctx(t), "s", nil, &PublishOptions{Priority: 9}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("priority 9: %v", err)
	}
	if _, err := q.Publish(tctx(t), "s", nil, &PublishOptions{Header: Header{"Mq-X": {"1"}}}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("reserved header: %v", err)
	}
}

func testNotFound(t *testing.T, env *conformanceEnv) {
	q := env.Q
	if _, err := q.Publish(tctx(t), "nope", []byte("x"), nil); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("Publish to a missing stream: %v", err)
	}
	if _, err := q.StreamInfo(tctx(t), "nope"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("StreamInfo: %v", err)
	}
	if err := q.DeleteStream(tctx(t), "nope"); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("DeleteStream: %v", err)
	}
	if _, err := q.CreateGroup(tctx(t), "nope", GroupConfig{Name: "g"}); !errors.Is(err, ErrStreamNotFound) {
		t.Errorf("CreateGroup: %v", err)
	}
	mustStream(t, q, StreamConfig{Name: "s"})
	if _, err := q.Consumer(tctx(t), "s", "nope"); !errors.Is(err, ErrGroupNotFound) {
		t.Errorf("Consumer: %v", err)
	}
	if _, err := q.GroupInfo(tctx(t), "s", "nope"); !errors.Is(err, ErrGroupNotFound) {
		t.Errorf("GroupInfo: %v", err)
	}
	if err := q.DeleteGroup(tctx(t), "s", "nope"); !errors.Is(err, ErrGroupNotFound) {
		t.Errorf("DeleteGroup: %v", err)
	}
	var oe *OpError
	_, err := q.Publish(tctx(t), "nope", nil, nil)
	if !errors.As(err, &oe) || oe.Op != "publish" || oe.Stream != "nope" {
		t.Errorf("error %v is not an *OpError naming publish and the stream", err)
	}
}

func testTooLarge(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s", MaxMsgSize: 100})
	if _, err := q.Publish(tctx(t), "s", make([]byte, 200), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	mustPub(t, q, "s", "fits", nil)
	if si, _ := q.StreamInfo(tctx(t), "s"); si.Msgs != 1 {
		t.Fatalf("Msgs %d", si.Msgs)
	}
}

func testExists(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s", MaxMsgs: 10})
	mustStream(t, q, StreamConfig{Name: "s", MaxMsgs: 10})
	if _, err := q.CreateStream(tctx(t), StreamConfig{Name: "s", MaxMsgs: 11}); !errors.Is(err, ErrExists) {
		t.Fatalf("other config: %v", err)
	}
	mustGroup(t, q, "s", GroupConfig{Name: "g"})
	if _, err := q.CreateGroup(tctx(t), "s", GroupConfig{Name: "g"}); err != nil {
		t.Fatalf("same group again: %v", err)
	}
	if _, err := q.CreateGroup(tctx(t), "s", GroupConfig{Name: "g", MaxDeliver: 9}); !errors.Is(err, ErrExists) {
		t.Fatalf("other group config: %v", err)
	}
}

func testNextTimeout(t *testing.T, env *conformanceEnv) {
	q := env.Q
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Next(ctx)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past its deadline: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Next returned %v after its deadline", el)
	}
	if _, err := c.Fetch(tctx(t), 0); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("Fetch(0): %v", err)
	}
}

func testReopen(t *testing.T, env *conformanceEnv) {
	q := env.Open(t)
	mustStream(t, q, StreamConfig{Name: "s"})
	c := mustGroup(t, q, "s", GroupConfig{Name: "g"})
	for i := range 3 {
		mustPub(t, q, "s", fmt.Sprint(i), &PublishOptions{ID: fmt.Sprint("id", i)})
	}
	mustAck(t, mustNext(t, c, 5*time.Second))
	mustNext(t, c, 5*time.Second) // held, then released by Close
	q.Close()
	env.Q.Close()
	q2 := env.Open(t)
	if p := mustPub(t, q2, "s", "again", &PublishOptions{ID: "id1"}); !p.Duplicate || p.Seq != 2 {
		t.Fatalf("dedupe after reopen: %+v", p)
	}
	c2, err := q2.Consumer(tctx(t), "s", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, want := range []string{"1", "2"} {
		d := mustNext(t, c2, 5*time.Second)
		if string(d.Data) != want {
			t.Fatalf("after reopen: %q, want %q", d.Data, want)
		}
		mustAck(t, d)
	}
	noNext(t, c2, 100*time.Millisecond)
}
