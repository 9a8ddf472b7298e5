package mq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// Conformance cases for the documented semantics of groups, settling,
// dead letters, priorities, delays and ordering. They run over every
// backend. Bounds on time are lower bounds (what the API promises) with
// generous upper ones, so that a loaded machine does not fail them.

func init() {
	conformanceCases = append(conformanceCases,
		conformanceCase{"semantics/read-what-was-published", semReadPublished},
		conformanceCase{"semantics/dedupe-by-id", semDedupe},
		conformanceCase{"semantics/groups-fan-out", semFanOut},
		conformanceCase{"semantics/consumers-compete", semCompete},
		conformanceCase{"semantics/nak-redelivers-next-attempt", semNak},
		conformanceCase{"semantics/nak-delay", semNakDelay},
		conformanceCase{"semantics/ackwait-redelivers", semAckWait},
		conformanceCase{"semantics/in-progress-extends", semInProgress},
		conformanceCase{"semantics/max-deliver-dead-letter-replay", semMaxDeliverDead},
		conformanceCase{"semantics/term-dead-letter", semTermDead},
		conformanceCase{"semantics/ackwait-exhausted-dead-letter", semAckWaitDead},
		conformanceCase{"semantics/backoff", semBackoff},
		conformanceCase{"semantics/priority-bands", semPriority},
		conformanceCase{"semantics/delay-and-at", semDelay},
		conformanceCase{"semantics/ordered-by-key-in-order", semOrderedInOrder},
		conformanceCase{"semantics/ordered-by-key-others-proceed", semOrderedParallel},
		conformanceCase{"semantics/workqueue-retention", semWorkQueue},
		conformanceCase{"semantics/limits-retention", semLimits},
		conformanceCase{"semantics/start-seq", semStartSeq},
		conformanceCase{"semantics/group-info", semGroupInfo},
		conformanceCase{"semantics/errors", semErrors},
		conformanceCase{"semantics/closed-consumer-redelivers", semCloseRedelivers},
		conformanceCase{"semantics/state-survives-reopen", semReopen},
	)
}

func semCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func semStream(t *testing.T, q *Queue, c StreamConfig) {
	t.Helper()
	if _, err := q.CreateStream(semCtx(t, 10*time.Second), c); err != nil {
		t.Fatalf("CreateStream %s: %v", c.Name, err)
	}
}

func semGroup(t *testing.T, q *Queue, stream string, c GroupConfig) *Consumer {
	t.Helper()
	ctx := semCtx(t, 10*time.Second)
	if _, err := q.CreateGroup(ctx, stream, c); err != nil {
		t.Fatalf("CreateGroup %s/%s: %v", stream, c.Name, err)
	}
	return semConsumer(t, q, stream, c.Name)
}

func semConsumer(t *testing.T, q *Queue, stream, group string) *Consumer {
	t.Helper()
	c, err := q.Consumer(semCtx(t, 10*time.Second), stream, group)
	if err != nil {
		t.Fatalf("Consumer %s/%s: %v", stream, group, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func semPub(t *testing.T, q *Queue, stream, data string, o *PublishOptions) PubAck {
	t.Helper()
	pa, err := q.Publish(semCtx(t, 10*time.Second), stream, []byte(data), o)
	if err != nil {
		t.Fatalf("Publish %s %q: %v", stream, data, err)
	}
	return pa
}

func semNext(t *testing.T, c *Consumer, d time.Duration) *Delivery {
	t.Helper()
	dl, err := c.Next(semCtx(t, d))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return dl
}

// semNone checks that nothing is delivered within d.
func semNone(t *testing.T, c *Consumer, d time.Duration) {
	t.Helper()
	dl, err := c.Next(semCtx(t, d))
	if err == nil {
		t.Fatalf("delivered %q (seq %d, attempt %d), want nothing", dl.Data, dl.Seq, dl.Attempt)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want a deadline error", err)
	}
}

func semAck(t *testing.T, d *Delivery) {
	t.Helper()
	if err := d.Ack(semCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Ack seq %d: %v", d.Seq, err)
	}
}

func semReadPublished(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	a := semPub(t, q, "S", "one", &PublishOptions{Header: Header{"X-A": {"1", "2"}}, ID: "id-1", Key: "k"})
	b := semPub(t, q, "S", "two", &PublishOptions{Priority: 2})
	if a.Stream != "S" || a.Seq == 0 || b.Seq <= a.Seq || a.Duplicate || b.Duplicate {
		t.Fatalf("acks %+v %+v", a, b)
	}
	ms, err := q.Read(semCtx(t, 10*time.Second), "S", 0, 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Read: %d messages, %v", len(ms), err)
	}
	m := ms[0]
	if string(m.Data) != "one" || m.Seq != a.Seq || m.ID != "id-1" || m.Key != "k" || m.Priority != 0 ||
		len(m.Header["X-A"]) != 2 || m.Header["X-A"][1] != "2" || m.Stream != "S" || m.Published.IsZero() {
		t.Fatalf("first message %+v", m)
	}
	if string(ms[1].Data) != "two" || ms[1].Seq != b.Seq || ms[1].Priority != 2 {
		t.Fatalf("second message %+v", ms[1])
	}
	ms, err = q.Read(semCtx(t, 10*time.Second), "S", b.Seq, 10)
	if err != nil || len(ms) != 1 || ms[0].Seq != b.Seq {
		t.Fatalf("Read from %d: %+v %v", b.Seq, ms, err)
	}
}

func semDedupe(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	a := semPub(t, q, "S", "x", &PublishOptions{ID: "same"})
	b := semPub(t, q, "S", "x", &PublishOptions{ID: "same"})
	c := semPub(t, q, "S", "y", &PublishOptions{ID: "other"})
	if a.Duplicate || !b.Duplicate || b.Seq != a.Seq || c.Duplicate || c.Seq == a.Seq {
		t.Fatalf("acks %+v %+v %+v", a, b, c)
	}
	// Another handle sees the same window.
	q2 := env.Open(t)
	if d := semPub(t, q2, "S", "x", &PublishOptions{ID: "same"}); !d.Duplicate || d.Seq != a.Seq {
		t.Fatalf("second handle: %+v", d)
	}
	si, err := q.StreamInfo(semCtx(t, 10*time.Second), "S")
	if err != nil || si.Msgs != 2 {
		t.Fatalf("StreamInfo: %+v %v", si, err)
	}
}

func semFanOut(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	g1 := semGroup(t, q, "S", GroupConfig{Name: "g1"})
	g2 := semGroup(t, q, "S", GroupConfig{Name: "g2"})
	for i := range 3 {
		semPub(t, q, "S", strconv.Itoa(i), nil)
	}
	for _, c := range []*Consumer{g1, g2} {
		for i := range 3 {
			d := semNext(t, c, 10*time.Second)
			if string(d.Data) != strconv.Itoa(i) || d.Attempt != 1 {
				t.Fatalf("group %s delivery %d: %q attempt %d", d.Group, i, d.Data, d.Attempt)
			}
			semAck(t, d)
		}
		semNone(t, c, 200*time.Millisecond)
	}
	si, _ := q.StreamInfo(semCtx(t, 10*time.Second), "S")
	if len(si.Groups) != 2 || si.Groups[0] != "g1" || si.Groups[1] != "g2" {
		t.Fatalf("groups %v", si.Groups)
	}
}

func semCompete(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c1 := semGroup(t, q, "S", GroupConfig{Name: "g"})
	c2 := semConsumer(t, env.Open(t), "S", "g")
	const n = 20
	for i := range n {
		semPub(t, q, "S", strconv.Itoa(i), nil)
	}
	seen := map[string]int{}
	got := [2]int{}
	for len(seen) < n {
		progressed := false
		for i, c := range []*Consumer{c1, c2} {
			ds, err := c.Fetch(semCtx(t, 300*time.Millisecond), 3)
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				seen[string(d.Data)]++
				got[i]++
				semAck(t, d)
			}
			progressed = true
		}
		if !progressed {
			t.Fatalf("%d of %d delivered, then nothing", len(seen), n)
		}
	}
	for k, v := range seen {
		if v != 1 {
			t.Fatalf("message %s delivered %d times", k, v)
		}
	}
	semNone(t, c1, 200*time.Millisecond)
	semNone(t, c2, 200*time.Millisecond)
}

func semNak(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g"})
	pa := semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	if d.Seq != pa.Seq || d.Attempt != 1 || d.Stream != "S" || d.Group != "g" || d.Deadline.IsZero() {
		t.Fatalf("delivery %+v", d)
	}
	if err := d.Nak(semCtx(t, 10*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(semCtx(t, 10*time.Second)); !errors.Is(err, ErrAcked) {
		t.Fatalf("Ack after Nak: %v, want ErrAcked", err)
	}
	d = semNext(t, c, 10*time.Second)
	if d.Seq != pa.Seq || d.Attempt != 2 {
		t.Fatalf("redelivery seq %d attempt %d", d.Seq, d.Attempt)
	}
	semAck(t, d)
	if err := d.Ack(semCtx(t, 10*time.Second)); !errors.Is(err, ErrAcked) {
		t.Fatalf("second Ack: %v, want ErrAcked", err)
	}
	semNone(t, c, 300*time.Millisecond)
}

func semNakDelay(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g"})
	semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	start := time.Now()
	if err := d.Nak(semCtx(t, 10*time.Second), 700*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d = semNext(t, c, 10*time.Second)
	if el := time.Since(start); el < 700*time.Millisecond || d.Attempt != 2 {
		t.Fatalf("redelivered after %v (attempt %d), want at least 700ms", el, d.Attempt)
	}
	semAck(t, d)
}

func semAckWait(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", AckWait: 500 * time.Millisecond})
	semPub(t, q, "S", "x", nil)
	d1 := semNext(t, c, 10*time.Second)
	start := time.Now()
	if d1.Deadline.Before(start.Add(300 * time.Millisecond)) {
		t.Fatalf("deadline %v is before now+AckWait", d1.Deadline)
	}
	d2 := semNext(t, semConsumer(t, env.Open(t), "S", "g"), 10*time.Second)
	if el := time.Since(start); el < 400*time.Millisecond || d2.Seq != d1.Seq || d2.Attempt != 2 {
		t.Fatalf("redelivered after %v as seq %d attempt %d", el, d2.Seq, d2.Attempt)
	}
	if err := d1.Ack(semCtx(t, 10*time.Second)); !errors.Is(err, ErrDeliveryLost) {
		t.Fatalf("Ack of the lost delivery: %v, want ErrDeliveryLost", err)
	}
	semAck(t, d2)
}

func semInProgress(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", AckWait: 1500 * time.Millisecond})
	other := semConsumer(t, env.Open(t), "S", "g")
	semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	done := make(chan error, 1)
	go func() {
		for range 8 {
			time.Sleep(300 * time.Millisecond)
			if err := d.InProgress(context.Background()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// Held for 2.4 s, longer than AckWait: never given to the other consumer.
	semNone(t, other, 2400*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("InProgress: %v", err)
	}
	semAck(t, d)
	if err := d.InProgress(semCtx(t, 10*time.Second)); !errors.Is(err, ErrAcked) {
		t.Fatalf("InProgress after Ack: %v, want ErrAcked", err)
	}
}

// semDead waits until the dead-letter stream holds want messages.
func semDead(t *testing.T, q *Queue, dl string, want int, poll func()) []StoredMessage {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ms, err := q.Read(semCtx(t, 10*time.Second), dl, 0, 100)
		if err != nil && !errors.Is(err, ErrStreamNotFound) {
			t.Fatal(err)
		}
		if len(ms) >= want {
			if len(ms) > want {
				t.Fatalf("dead-letter stream holds %d messages, want %d", len(ms), want)
			}
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter stream holds %d messages, want %d", len(ms), want)
		}
		if poll != nil {
			poll()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func semCheckDead(t *testing.T, m StoredMessage, data, stream, group string, seq uint64, reason string, attempts int) {
	t.Helper()
	h := m.Header
	if string(m.Data) != data || h.Get(HeaderDeadStream) != stream || h.Get(HeaderDeadGroup) != group ||
		h.Get(HeaderDeadSeq) != strconv.FormatUint(seq, 10) || h.Get(HeaderDeadReason) != reason ||
		h.Get(HeaderDeadAttempts) != strconv.Itoa(attempts) {
		t.Fatalf("dead letter %q %v, want %q from %s/%s seq %d reason %s attempts %d", m.Data, h, data, stream, group, seq, reason, attempts)
	}
}

func semMaxDeliverDead(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", MaxDeliver: 2, DeadLetter: "DLQ"})
	pa := semPub(t, q, "S", "x", &PublishOptions{Header: Header{"X-A": {"a"}}, Key: "k", Priority: 1})
	for i := 1; i <= 2; i++ {
		d := semNext(t, c, 10*time.Second)
		if d.Attempt != i {
			t.Fatalf("attempt %d, want %d", d.Attempt, i)
		}
		if err := d.Nak(semCtx(t, 10*time.Second), 0); err != nil {
			t.Fatal(err)
		}
	}
	semNone(t, c, 300*time.Millisecond)
	ms := semDead(t, q, "DLQ", 1, nil)
	semCheckDead(t, ms[0], "x", "S", "g", pa.Seq, "max-deliver", 2)
	if ms[0].Header.Get("X-A") != "a" || ms[0].Key != "k" || ms[0].Priority != 1 {
		t.Fatalf("dead letter lost header, key or priority: %+v", ms[0])
	}
	gi, err := q.GroupInfo(semCtx(t, 10*time.Second), "S", "g")
	if err != nil || gi.DeadLettered != 1 {
		t.Fatalf("GroupInfo: %+v %v", gi, err)
	}
	n, err := q.Replay(semCtx(t, 10*time.Second), "DLQ", 10)
	if err != nil || n != 1 {
		t.Fatalf("Replay: %d %v", n, err)
	}
	semDead(t, q, "DLQ", 0, nil)
	d := semNext(t, c, 10*time.Second)
	if string(d.Data) != "x" || d.Attempt != 1 || d.Seq == pa.Seq || d.Key != "k" || d.Priority != 1 ||
		d.Header.Get("X-A") != "a" || d.Header.Get(HeaderDeadReason) != "" {
		t.Fatalf("replayed delivery %+v", d)
	}
	semAck(t, d)
}

func semTermDead(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", DeadLetter: "DLQ"})
	pa := semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	if err := d.Term(semCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	semNone(t, c, 300*time.Millisecond)
	semCheckDead(t, semDead(t, q, "DLQ", 1, nil)[0], "x", "S", "g", pa.Seq, "terminated", 1)
	// Without a dead-letter stream a terminated message is dropped.
	c2 := semGroup(t, q, "S", GroupConfig{Name: "nodl"})
	d = semNext(t, c2, 10*time.Second)
	if err := d.Term(semCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	semNone(t, c2, 300*time.Millisecond)
}

func semAckWaitDead(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", MaxDeliver: 1, AckWait: 300 * time.Millisecond, DeadLetter: "DLQ"})
	pa := semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	_ = d // held and never settled: its one attempt runs out
	ms := semDead(t, q, "DLQ", 1, func() {
		if d, err := c.Next(semCtx(t, 200*time.Millisecond)); err == nil {
			t.Fatalf("delivered again (attempt %d) after its only attempt", d.Attempt)
		}
	})
	semCheckDead(t, ms[0], "x", "S", "g", pa.Seq, "max-deliver", 1)
}

func semBackoff(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", Backoff: []time.Duration{300 * time.Millisecond, 900 * time.Millisecond}})
	semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	for i, want := range []time.Duration{300 * time.Millisecond, 900 * time.Millisecond, 900 * time.Millisecond} {
		start := time.Now()
		if err := d.Nak(semCtx(t, 10*time.Second), 0); err != nil {
			t.Fatal(err)
		}
		d = semNext(t, c, 10*time.Second)
		if el := time.Since(start); el < want || d.Attempt != i+2 {
			t.Fatalf("attempt %d after %v, want attempt %d after at least %v", d.Attempt, el, i+2, want)
		}
	}
	semAck(t, d)
}

func semPriority(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	if _, err := q.CreateGroup(semCtx(t, 10*time.Second), "S", GroupConfig{Name: "g"}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []int{0, 0, 3, 1, 0, 3} {
		semPub(t, q, "S", fmt.Sprintf("%d-%d", p, i), &PublishOptions{Priority: p})
	}
	c := semConsumer(t, q, "S", "g")
	var got []string
	for range 6 {
		d := semNext(t, c, 10*time.Second)
		got = append(got, string(d.Data))
		semAck(t, d)
	}
	want := []string{"3-2", "3-5", "1-3", "0-0", "0-1", "0-4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

func semDelay(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g"})
	start := time.Now()
	semPub(t, q, "S", "later", &PublishOptions{Delay: 1500 * time.Millisecond})
	semPub(t, q, "S", "at", &PublishOptions{At: start.Add(1500 * time.Millisecond)})
	semPub(t, q, "S", "now", nil)
	d := semNext(t, c, 10*time.Second)
	if string(d.Data) != "now" {
		t.Fatalf("first delivery %q, want the undelayed one", d.Data)
	}
	semAck(t, d)
	seen := map[string]bool{}
	for range 2 {
		d := semNext(t, c, 15*time.Second)
		if el := time.Since(start); el < 1500*time.Millisecond {
			t.Fatalf("%q delivered after %v, before its time", d.Data, el)
		}
		if d.NotBefore.IsZero() || d.NotBefore.Before(start.Add(1400*time.Millisecond)) {
			t.Fatalf("%q NotBefore %v", d.Data, d.NotBefore)
		}
		seen[string(d.Data)] = true
		semAck(t, d)
	}
	if !seen["later"] || !seen["at"] {
		t.Fatalf("delivered %v", seen)
	}
}

func semOrderedInOrder(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c1 := semGroup(t, q, "S", GroupConfig{Name: "g", OrderedByKey: true})
	c2 := semConsumer(t, env.Open(t), "S", "g")
	for i := range 3 {
		semPub(t, q, "S", "k1-"+strconv.Itoa(i), &PublishOptions{Key: "k1"})
	}
	d := semNext(t, c1, 10*time.Second)
	if string(d.Data) != "k1-0" {
		t.Fatalf("first %q", d.Data)
	}
	// While k1-0 is held, no other message of k1 goes out.
	semNone(t, c2, 400*time.Millisecond)
	// A nak keeps the order: k1-0 again, not k1-1.
	if err := d.Nak(semCtx(t, 10*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	d = semNext(t, c2, 10*time.Second)
	if string(d.Data) != "k1-0" || d.Attempt != 2 {
		t.Fatalf("after nak %q attempt %d, want k1-0 attempt 2", d.Data, d.Attempt)
	}
	semAck(t, d)
	for i := 1; i < 3; i++ {
		d := semNext(t, c1, 10*time.Second)
		if string(d.Data) != "k1-"+strconv.Itoa(i) {
			t.Fatalf("got %q, want k1-%d", d.Data, i)
		}
		semAck(t, d)
	}
}

func semOrderedParallel(t *testing.T, env *conformanceEnv) {
	if env.Q.Backend() == "nats" {
		t.Skip("JetStream backend: OrderedByKey serialises the whole group (MaxAckPending 1), other keys wait (see package doc)")
	}
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c1 := semGroup(t, q, "S", GroupConfig{Name: "g", OrderedByKey: true})
	c2 := semConsumer(t, env.Open(t), "S", "g")
	semPub(t, q, "S", "a0", &PublishOptions{Key: "a"})
	semPub(t, q, "S", "a1", &PublishOptions{Key: "a"})
	semPub(t, q, "S", "b0", &PublishOptions{Key: "b"})
	semPub(t, q, "S", "n", nil)
	d := semNext(t, c1, 10*time.Second)
	if string(d.Data) != "a0" {
		t.Fatalf("first %q", d.Data)
	}
	got := map[string]bool{}
	for range 2 {
		e := semNext(t, c2, 10*time.Second)
		got[string(e.Data)] = true
		semAck(t, e)
	}
	if !got["b0"] || !got["n"] {
		t.Fatalf("while a0 is held, delivered %v, want b0 and n", got)
	}
	semAck(t, d)
	if e := semNext(t, c2, 10*time.Second); string(e.Data) != "a1" {
		t.Fatalf("after a0 acked: %q, want a1", e.Data)
	}
}

func semWorkQueue(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S", Retention: WorkQueuePolicy})
	c1 := semGroup(t, q, "S", GroupConfig{Name: "g1"})
	c2 := semGroup(t, q, "S", GroupConfig{Name: "g2"})
	semPub(t, q, "S", "x", nil)
	semAck(t, semNext(t, c1, 10*time.Second))
	if si, err := q.StreamInfo(semCtx(t, 10*time.Second), "S"); err != nil || si.Msgs != 1 {
		t.Fatalf("acked by one group of two: %+v %v", si, err)
	}
	semAck(t, semNext(t, c2, 10*time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for {
		si, err := q.StreamInfo(semCtx(t, 10*time.Second), "S")
		if err != nil {
			t.Fatal(err)
		}
		if si.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acked by every group, still stored: %+v", si)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func semLimits(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S", MaxMsgs: 3})
	var last PubAck
	for i := range 5 {
		last = semPub(t, q, "S", strconv.Itoa(i), nil)
	}
	si, err := q.StreamInfo(semCtx(t, 10*time.Second), "S")
	if err != nil || si.Msgs != 3 || si.LastSeq != last.Seq {
		t.Fatalf("StreamInfo %+v %v", si, err)
	}
	ms, err := q.Read(semCtx(t, 10*time.Second), "S", 0, 10)
	if err != nil || len(ms) != 3 || string(ms[0].Data) != "2" {
		t.Fatalf("Read %+v %v", ms, err)
	}
}

func semStartSeq(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	var acks []PubAck
	for i := range 4 {
		acks = append(acks, semPub(t, q, "S", strconv.Itoa(i), nil))
	}
	c := semGroup(t, q, "S", GroupConfig{Name: "g", StartSeq: acks[2].Seq})
	for _, want := range []string{"2", "3"} {
		d := semNext(t, c, 10*time.Second)
		if string(d.Data) != want {
			t.Fatalf("got %q, want %q", d.Data, want)
		}
		semAck(t, d)
	}
	semNone(t, c, 200*time.Millisecond)
}

func semGroupInfo(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	cfg := GroupConfig{Name: "g", AckWait: 20 * time.Second, MaxDeliver: 7, Backoff: []time.Duration{time.Second}}
	c := semGroup(t, q, "S", cfg)
	var acks []PubAck
	for i := range 3 {
		acks = append(acks, semPub(t, q, "S", strconv.Itoa(i), nil))
	}
	ds, err := c.Fetch(semCtx(t, 10*time.Second), 2)
	for err == nil && len(ds) < 2 {
		var more []*Delivery
		more, err = c.Fetch(semCtx(t, 10*time.Second), 2-len(ds))
		ds = append(ds, more...)
	}
	if err != nil {
		t.Fatal(err)
	}
	gi, err := q.GroupInfo(semCtx(t, 10*time.Second), "S", "g")
	if err != nil {
		t.Fatal(err)
	}
	if gi.Stream != "S" || gi.Config.Name != "g" || gi.Config.MaxDeliver != 7 || gi.Config.AckWait != 20*time.Second ||
		gi.Pending != 1 || gi.InFlight != 2 || gi.OldestUnacked.IsZero() {
		t.Fatalf("with 2 in flight of 3: %+v", gi)
	}
	for _, d := range ds {
		semAck(t, d)
	}
	semAck(t, semNext(t, c, 10*time.Second))
	gi, err = q.GroupInfo(semCtx(t, 10*time.Second), "S", "g")
	if err != nil || gi.Pending != 0 || gi.InFlight != 0 || gi.AckFloor != acks[2].Seq || !gi.OldestUnacked.IsZero() {
		t.Fatalf("all acked: %+v %v", gi, err)
	}
}

func semErrors(t *testing.T, env *conformanceEnv) {
	q := env.Q
	ctx := semCtx(t, 20*time.Second)
	if _, err := q.Publish(ctx, "nope", []byte("x"), nil); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("publish to a missing stream: %v", err)
	}
	if _, err := q.StreamInfo(ctx, "nope"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("StreamInfo of a missing stream: %v", err)
	}
	if _, err := q.CreateGroup(ctx, "nope", GroupConfig{Name: "g"}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("group on a missing stream: %v", err)
	}
	semStream(t, q, StreamConfig{Name: "S", MaxMsgSize: 1024})
	semStream(t, q, StreamConfig{Name: "S", MaxMsgSize: 1024}) // the same again: fine
	if _, err := q.CreateStream(ctx, StreamConfig{Name: "S", MaxMsgSize: 2048}); !errors.Is(err, ErrExists) {
		t.Fatalf("stream with another configuration: %v", err)
	}
	if _, err := q.Consumer(ctx, "S", "g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("consumer of a missing group: %v", err)
	}
	if _, err := q.GroupInfo(ctx, "S", "g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("GroupInfo of a missing group: %v", err)
	}
	semGroup(t, q, "S", GroupConfig{Name: "g", MaxDeliver: 3})
	if _, err := q.CreateGroup(ctx, "S", GroupConfig{Name: "g", MaxDeliver: 3}); err != nil {
		t.Fatalf("the same group again: %v", err)
	}
	if _, err := q.CreateGroup(ctx, "S", GroupConfig{Name: "g", MaxDeliver: 4}); !errors.Is(err, ErrExists) {
		t.Fatalf("group with another configuration: %v", err)
	}
	if _, err := q.Publish(ctx, "S", make([]byte, 4096), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("message above MaxMsgSize: %v", err)
	}
	if _, err := q.Publish(ctx, "S", []byte("x"), &PublishOptions{Header: Header{"Nats-Msg-Id": {"x"}}}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("reserved header: %v", err)
	}
	var oe *OpError
	if _, err := q.Publish(ctx, "nope", nil, nil); !errors.As(err, &oe) || oe.Op != "publish" || oe.Stream != "nope" {
		t.Fatalf("error %v is not an OpError naming publish and the stream", err)
	}
	if err := q.DeleteGroup(ctx, "S", "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.GroupInfo(ctx, "S", "g"); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("GroupInfo of a deleted group: %v", err)
	}
	if err := q.DeleteStream(ctx, "S"); err != nil {
		t.Fatal(err)
	}
	if err := q.DeleteStream(ctx, "S"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("deleting a deleted stream: %v", err)
	}
	// Fetch through a timeout is a net.Error timeout.
	semStream(t, q, StreamConfig{Name: "T"})
	c := semGroup(t, q, "T", GroupConfig{Name: "g"})
	_, err := c.Next(semCtx(t, 100*time.Millisecond))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Next past its deadline: %v, want a timeout", err)
	}
	q.Close()
	if _, err := q.Publish(ctx, "T", []byte("x"), nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("publish on a closed queue: %v", err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Next on a closed queue: %v", err)
	}
}

func semCloseRedelivers(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g", AckWait: time.Second})
	semPub(t, q, "S", "x", nil)
	d := semNext(t, c, 10*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := semNext(t, semConsumer(t, env.Open(t), "S", "g"), 15*time.Second)
	if d2.Seq != d.Seq || d2.Attempt != 2 {
		t.Fatalf("after Close: seq %d attempt %d", d2.Seq, d2.Attempt)
	}
	semAck(t, d2)
}

func semReopen(t *testing.T, env *conformanceEnv) {
	q := env.Q
	semStream(t, q, StreamConfig{Name: "S"})
	c := semGroup(t, q, "S", GroupConfig{Name: "g"})
	for i := range 3 {
		semPub(t, q, "S", strconv.Itoa(i), nil)
	}
	semAck(t, semNext(t, c, 10*time.Second))
	q.Close()
	q2 := env.Open(t)
	c2 := semConsumer(t, q2, "S", "g")
	for _, want := range []string{"1", "2"} {
		d := semNext(t, c2, 10*time.Second)
		if string(d.Data) != want || d.Attempt != 1 {
			t.Fatalf("after reopen %q attempt %d, want %q attempt 1", d.Data, d.Attempt, want)
		}
		semAck(t, d)
	}
	semNone(t, c2, 200*time.Millisecond)
}
