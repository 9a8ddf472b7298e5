package mq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The JetStream mapping (see the package doc, "JetStream backend"):
//
//	stream S            JetStream stream "MQ_S", subjects "mq.S.>"
//	band b message      subject "mq.S.p<b>.m"
//	delayed message     a schedule on "mq.S.s.<nuid>" targeting "mq.S.p<b>.m"
//	dead letter         subject "mq.D.p<b>.d.<S>.<G>" of dead-letter stream D
//	group G             durable pull consumers "G_p0".."G_p3" (one per band,
//	                    filter "mq.S.p<b>.>"), or one "G_pa" over every band
//	                    when OrderedByKey (MaxAckPending 1)
//	WorkQueue stream    interest retention, and the consumer "mq_schedules"
//	                    that holds pending schedules
const (
	jsStreamPrefix   = "MQ_"
	jsSubjectPrefix  = "mq."
	jsMetaConfig     = "mq.cfg"
	jsMetaGroup      = "mq.group"
	jsSchedConsumer  = "mq_schedules"
	jsAllBands       = "_pa"
	jsOwnTermReason  = "mq: dead-lettered"
	jsHeaderKey      = "Mq-Key"
	jsHeaderNotBef   = "Mq-Not-Before"
	jsHeaderID       = "Mq-Id"
	jsAdvisoryMaxDel = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
	jsAdvisoryTerm   = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."
)

func jsStream(s string) string { return jsStreamPrefix + s }
func jsBandSubject(s string, b int) string {
	return jsSubjectPrefix + s + ".p" + strconv.Itoa(b) + ".m"
}
func jsBandFilter(s string, b int) string { return jsSubjectPrefix + s + ".p" + strconv.Itoa(b) + ".>" }
func jsDeadSubject(dl string, b int, s, g string) string {
	return jsSubjectPrefix + dl + ".p" + strconv.Itoa(b) + ".d." + s + "." + g
}

// jsBand returns the band of a stored subject "mq.S.p<b>...." (0 when not one).
func jsBand(subj string) int {
	t := strings.Split(subj, ".")
	if len(t) >= 3 && len(t[2]) == 2 && t[2][0] == 'p' && t[2][1] >= '0' && t[2][1] <= '0'+MaxPriority {
		return int(t[2][1] - '0')
	}
	return 0
}

// streamMeta is StreamConfig as kept in the JetStream stream's metadata.
func streamMeta(c StreamConfig) string {
	b, _ := json.Marshal(c)
	return string(b)
}

func parseStreamMeta(s string) (StreamConfig, bool) {
	var c StreamConfig
	if s == "" || json.Unmarshal([]byte(s), &c) != nil {
		return StreamConfig{}, false
	}
	return c, true
}

func groupMeta(c GroupConfig) string {
	if len(c.Backoff) == 0 {
		c.Backoff = nil
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func parseGroupMeta(s string) (GroupConfig, bool) {
	var c GroupConfig
	if s == "" || json.Unmarshal([]byte(s), &c) != nil {
		return GroupConfig{}, false
	}
	return c, true
}

func noLimit(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}

// jsErr maps a nats.go error to the package's sentinels, keeping the
// original text.
func jsErr(err error) error {
	var ae *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %v", ErrStreamNotFound, err)
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrConsumerDoesNotExist):
		return fmt.Errorf("%w: %v", ErrGroupNotFound, err)
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: %v", net.ErrClosed, err)
	case errors.As(err, &ae) && ae.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return err
}

// jsBackend is the JetStream backend of a Queue.
type jsBackend struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	name string
}

// openJetStream opens the JetStream backend on the NATS server(s) at url.
func openJetStream(ctx context.Context, url string, c Config) (backend, error) {
	name := c.Name
	if name == "" {
		host, _ := os.Hostname()
		name = "mq " + host + "/" + strconv.Itoa(os.Getpid())
	}
	opts := []nats.Option{nats.Name(name)}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	opts = append(opts, c.NATSOptions...)
	type res struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := nats.Connect(url, opts...)
		ch <- res{nc, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, r.err)
	}
	js, err := jetstream.New(r.nc)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		r.nc.Close()
		return nil, jsErr(err)
	}
	return &jsBackend{nc: r.nc, js: js, name: name}, nil
}

func (b *jsBackend) close() error {
	b.nc.Close()
	return nil
}

func (b *jsBackend) stream(ctx context.Context, name string) (jetstream.Stream, StreamConfig, error) {
	s, err := b.js.Stream(ctx, jsStream(name))
	if err != nil {
		return nil, StreamConfig{}, jsErr(err)
	}
	c, ok := parseStreamMeta(s.CachedInfo().Config.Metadata[jsMetaConfig])
	if !ok {
		return nil, StreamConfig{}, fmt.Errorf("%w: JetStream stream %s is not an mq stream", ErrStreamNotFound, jsStream(name))
	}
	return s, c, nil
}

func (b *jsBackend) createStream(ctx context.Context, c StreamConfig) (StreamInfo, error) {
	meta := streamMeta(c)
	cfg := jetstream.StreamConfig{
		Name:              jsStream(c.Name),
		Subjects:          []string{jsSubjectPrefix + c.Name + ".>"},
		Retention:         jetstream.LimitsPolicy,
		MaxAge:            c.MaxAge,
		MaxBytes:          noLimit(c.MaxBytes),
		MaxMsgs:           noLimit(c.MaxMsgs),
		MaxMsgSize:        int32(c.MaxMsgSize),
		Duplicates:        c.DuplicateWindow,
		Replicas:          c.Replicas,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		AllowMsgSchedules: true,
		AllowRollup:       true,
		Metadata:          map[string]string{jsMetaConfig: meta},
	}
	if c.Retention == WorkQueuePolicy {
		cfg.Retention = jetstream.InterestPolicy
	}
	s, err := b.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		var have StreamConfig
		s, have, err = b.stream(ctx, c.Name)
		if err != nil {
			return StreamInfo{}, err
		}
		if streamMeta(have) != meta {
			return StreamInfo{}, fmt.Errorf("%w: stream %s", ErrExists, c.Name)
		}
	} else if err != nil {
		return StreamInfo{}, jsErr(err)
	}
	if c.Retention == WorkQueuePolicy {
		// Interest retention drops a message no consumer filters for: this
		// consumer, never pulled, keeps schedules until they fire.
		_, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: jsSchedConsumer, AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: jsSubjectPrefix + c.Name + ".s.>",
		})
		if err != nil {
			return StreamInfo{}, jsErr(err)
		}
	}
	return b.streamInfo(ctx, c.Name)
}

func (b *jsBackend) deleteStream(ctx context.Context, name string) error {
	if _, _, err := b.stream(ctx, name); err != nil {
		return err
	}
	return jsErr(b.js.DeleteStream(ctx, jsStream(name)))
}

func (b *jsBackend) streamInfo(ctx context.Context, name string) (StreamInfo, error) {
	s, c, err := b.stream(ctx, name)
	if err != nil {
		return StreamInfo{}, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return StreamInfo{}, jsErr(err)
	}
	groups, err := b.groupNames(ctx, s)
	if err != nil {
		return StreamInfo{}, err
	}
	return StreamInfo{Config: c, Msgs: info.State.Msgs, Bytes: info.State.Bytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Groups: groups}, nil
}

// groupNames lists the groups of a stream, from its consumers' names.
func (b *jsBackend) groupNames(ctx context.Context, s jetstream.Stream) ([]string, error) {
	l := s.ConsumerNames(ctx)
	seen := map[string]bool{}
	for n := range l.Name() {
		if g, ok := strings.CutSuffix(n, jsAllBands); ok {
			seen[g] = true
		} else if len(n) > 3 && n[len(n)-3:len(n)-1] == "_p" && n[len(n)-1] >= '0' && n[len(n)-1] <= '0'+MaxPriority {
			seen[n[:len(n)-3]] = true
		}
	}
	if err := l.Err(); err != nil {
		return nil, jsErr(err)
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, nil
}

func (b *jsBackend) streams(ctx context.Context) ([]StreamInfo, error) {
	l := b.js.StreamNames(ctx)
	var names []string
	for n := range l.Name() {
		if s, ok := strings.CutPrefix(n, jsStreamPrefix); ok {
			names = append(names, s)
		}
	}
	if err := l.Err(); err != nil {
		return nil, jsErr(err)
	}
	sort.Strings(names)
	out := make([]StreamInfo, 0, len(names))
	for _, n := range names {
		si, err := b.streamInfo(ctx, n)
		if errors.Is(err, ErrStreamNotFound) {
			continue // deleted meanwhile, or not an mq stream
		}
		if err != nil {
			return nil, err
		}
		out = append(out, si)
	}
	return out, nil
}

func (b *jsBackend) publish(ctx context.Context, stream string, data []byte, o *PublishOptions) (PubAck, error) {
	m := nats.NewMsg(jsBandSubject(stream, o.Priority))
	m.Data = data
	for k, v := range o.Header {
		m.Header[k] = slices.Clone(v)
	}
	if o.Key != "" {
		m.Header.Set(jsHeaderKey, o.Key)
	}
	var popts []jetstream.PublishOpt
	if o.ID != "" {
		popts = append(popts, jetstream.WithMsgID(o.ID))
	}
	now := time.Now()
	at := o.At
	if o.Delay > 0 && now.Add(o.Delay).After(at) {
		at = now.Add(o.Delay)
	}
	if at.After(now) {
		// A message schedule: the server publishes the message to its
		// band's subject when it is due (and removes the schedule).
		nb := at.UTC().Format(time.RFC3339Nano)
		m.Header.Set("Nats-Schedule", "@at "+nb)
		m.Header.Set("Nats-Schedule-Target", m.Subject)
		m.Header.Set(jsHeaderNotBef, nb)
		if o.ID != "" {
			m.Header.Set(jsHeaderID, o.ID)
		}
		m.Subject = jsSubjectPrefix + stream + ".s." + nuid.Next()
	}
	pa, err := b.js.PublishMsg(ctx, m, popts...)
	if err != nil {
		return PubAck{}, jsErr(err)
	}
	if pa.Stream != jsStream(stream) {
		return PubAck{}, fmt.Errorf("%w: subject of %s stored by JetStream stream %s", ErrStreamNotFound, stream, pa.Stream)
	}
	return PubAck{Stream: stream, Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// storedMessage converts a JetStream message, hiding the headers mq keeps
// for itself (Nats-*, Mq-Key, Mq-Not-Before, Mq-Id; the Mq-Dead-* ones stay).
func storedMessage(stream string, seq uint64, subj string, h nats.Header, data []byte, ts time.Time) StoredMessage {
	m := StoredMessage{Stream: stream, Seq: seq, Data: data, Published: ts, Header: Header{}}
	band := jsBand(subj)
	for k, v := range h {
		switch {
		case k == jsHeaderKey:
			m.Key = h.Get(k)
		case k == jsHeaderID, k == jsMsgIDHeader:
			if m.ID == "" {
				m.ID = h.Get(k)
			}
		case k == jsHeaderNotBef:
			m.NotBefore, _ = time.Parse(time.RFC3339Nano, h.Get(k))
		case k == "Nats-Schedule-Target":
			band = jsBand(h.Get(k))
		case strings.HasPrefix(k, "Nats-"):
		default:
			m.Header[k] = v
		}
	}
	m.Priority = band
	return m
}

const jsMsgIDHeader = "Nats-Msg-Id"

func (b *jsBackend) read(ctx context.Context, stream string, seq uint64, n int) ([]StoredMessage, error) {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	seq = max(seq, 1)
	var out []StoredMessage
	for len(out) < n {
		rm, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(jsSubjectPrefix+stream+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, jsErr(err)
		}
		out = append(out, storedMessage(stream, rm.Sequence, rm.Subject, rm.Header, rm.Data, rm.Time))
		seq = rm.Sequence + 1
	}
	return out, nil
}

func (b *jsBackend) deleteMsg(ctx context.Context, stream string, seq uint64) error {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	err = s.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // gone already: what a replay wants
	}
	return jsErr(err)
}

// jsBandConsumer is one of a group's JetStream consumers.
type jsBandConsumer struct {
	name    string
	band    int // -1: every band
	filters []string
}

func groupConsumers(stream string, c GroupConfig) []jsBandConsumer {
	if c.OrderedByKey {
		bc := jsBandConsumer{name: c.Name + jsAllBands, band: -1}
		for b := MaxPriority; b >= 0; b-- {
			bc.filters = append(bc.filters, jsBandFilter(stream, b))
		}
		return []jsBandConsumer{bc}
	}
	var out []jsBandConsumer
	for b := MaxPriority; b >= 0; b-- {
		out = append(out, jsBandConsumer{name: c.Name + "_p" + strconv.Itoa(b), band: b, filters: []string{jsBandFilter(stream, b)}})
	}
	return out
}

// jsMaxDeliver is MaxDeliver as JetStream gets it: one attempt more, so
// that a message whose last attempt ran out of AckWait comes back once,
// to a consumer of mq that dead-letters it instead of handing it out.
func jsMaxDeliver(c GroupConfig) int {
	if c.MaxDeliver < 0 {
		return -1
	}
	return c.MaxDeliver + 1
}

func (b *jsBackend) createGroup(ctx context.Context, stream string, c GroupConfig) (GroupInfo, error) {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return GroupInfo{}, err
	}
	meta := groupMeta(c)
	if have, err := b.findGroup(ctx, s, c.Name); err == nil {
		if groupMeta(have) != meta {
			return GroupInfo{}, fmt.Errorf("%w: group %s/%s", ErrExists, stream, c.Name)
		}
	} else if !errors.Is(err, ErrGroupNotFound) {
		return GroupInfo{}, err
	}
	if c.DeadLetter != "" {
		dl, _ := StreamConfig{Name: c.DeadLetter}.withDefaults()
		if _, _, err := b.stream(ctx, c.DeadLetter); errors.Is(err, ErrStreamNotFound) {
			if _, err := b.createStream(ctx, dl); err != nil && !errors.Is(err, ErrExists) {
				return GroupInfo{}, err
			}
		}
	}
	// JetStream's BackOff is the whole wait of each attempt before the
	// next: AckWait, then mq's backoff.
	var backoff []time.Duration
	for _, d := range c.Backoff {
		backoff = append(backoff, c.AckWait+d)
	}
	if md := jsMaxDeliver(c); md > 0 && len(backoff) > md {
		backoff = backoff[:md]
	}
	for _, bc := range groupConsumers(stream, c) {
		cc := jetstream.ConsumerConfig{
			Durable:       bc.name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    jsMaxDeliver(c),
			BackOff:       backoff,
			MaxAckPending: -1,
			Metadata:      map[string]string{jsMetaConfig: meta, jsMetaGroup: c.Name},
		}
		if len(backoff) > 0 {
			cc.AckWait = backoff[0]
		}
		if c.OrderedByKey {
			cc.MaxAckPending = 1
		}
		if len(bc.filters) == 1 {
			cc.FilterSubject = bc.filters[0]
		} else {
			cc.FilterSubjects = bc.filters
		}
		if c.StartSeq > 0 {
			cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cc.OptStartSeq = c.StartSeq
		}
		if _, err := s.CreateConsumer(ctx, cc); err != nil {
			if errors.Is(err, jetstream.ErrConsumerExists) {
				return GroupInfo{}, fmt.Errorf("%w: group %s/%s: %v", ErrExists, stream, c.Name, err)
			}
			return GroupInfo{}, jsErr(err)
		}
	}
	return b.groupInfo(ctx, stream, c.Name)
}

// findGroup returns a group's configuration, from its consumers' metadata.
func (b *jsBackend) findGroup(ctx context.Context, s jetstream.Stream, group string) (GroupConfig, error) {
	for _, n := range []string{group + "_p0", group + jsAllBands} {
		cons, err := s.Consumer(ctx, n)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return GroupConfig{}, jsErr(err)
		}
		meta := cons.CachedInfo().Config.Metadata
		if c, ok := parseGroupMeta(meta[jsMetaConfig]); ok && meta[jsMetaGroup] == group {
			return c, nil
		}
	}
	return GroupConfig{}, fmt.Errorf("%w: %s", ErrGroupNotFound, group)
}

func (b *jsBackend) deleteGroup(ctx context.Context, stream, group string) error {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	c, err := b.findGroup(ctx, s, group)
	if err != nil {
		return err
	}
	for _, bc := range groupConsumers(stream, c) {
		if err := s.DeleteConsumer(ctx, bc.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return jsErr(err)
		}
	}
	return nil
}

func (b *jsBackend) groupInfo(ctx context.Context, stream, group string) (GroupInfo, error) {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return GroupInfo{}, err
	}
	c, err := b.findGroup(ctx, s, group)
	if err != nil {
		return GroupInfo{}, err
	}
	gi := GroupInfo{Stream: stream, Config: c}
	floor := uint64(0)
	first := true
	for _, bc := range groupConsumers(stream, c) {
		cons, err := s.Consumer(ctx, bc.name)
		if err != nil {
			return GroupInfo{}, jsErr(err)
		}
		ci := cons.CachedInfo()
		gi.Pending += ci.NumPending
		gi.InFlight += ci.NumAckPending
		gi.Redelivered += uint64(ci.NumRedelivered)
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			continue // settled up to the stream's end
		}
		if first || ci.AckFloor.Stream < floor {
			floor, first = ci.AckFloor.Stream, false
		}
		for _, f := range bc.filters {
			rm, err := s.GetMsg(ctx, ci.AckFloor.Stream+1, jetstream.WithGetMsgSubject(f))
			if err == nil && (gi.OldestUnacked.IsZero() || rm.Time.Before(gi.OldestUnacked)) {
				gi.OldestUnacked = rm.Time
			}
		}
	}
	if first {
		info, err := s.Info(ctx)
		if err != nil {
			return GroupInfo{}, jsErr(err)
		}
		floor = info.State.LastSeq
	}
	gi.AckFloor = floor
	if c.DeadLetter != "" {
		if dl, err := b.js.Stream(ctx, jsStream(c.DeadLetter)); err == nil {
			info, err := dl.Info(ctx, jetstream.WithSubjectFilter(jsSubjectPrefix+c.DeadLetter+".*.d."+stream+"."+group))
			if err == nil {
				for _, n := range info.State.Subjects {
					gi.DeadLettered += n
				}
			}
		}
	}
	return gi, nil
}

func (b *jsBackend) consumer(ctx context.Context, stream, group string) (consumerBackend, error) {
	s, _, err := b.stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	c, err := b.findGroup(ctx, s, group)
	if err != nil {
		return nil, err
	}
	jc := &jsConsumer{b: b, s: s, stream: stream, cfg: c, wake: make(chan struct{}, 1), closing: make(chan struct{})}
	jc.cond = sync.NewCond(&jc.mu)
	for _, bc := range groupConsumers(stream, c) {
		cons, err := s.Consumer(ctx, bc.name)
		if err != nil {
			return nil, jsErr(err)
		}
		jc.bands = append(jc.bands, &jsBandPull{bc: bc, cons: cons})
	}
	// The advisories of messages JetStream gave up on, or that were
	// terminated by other clients, feed the dead-letter stream too; one
	// consumer of the group handles each (queue subscription).
	queue := "mq.dead." + stream + "." + group
	for _, subj := range []string{jsAdvisoryMaxDel, jsAdvisoryTerm} {
		sub, err := b.nc.QueueSubscribe(subj+jsStream(stream)+".*", queue, jc.advisory)
		if err != nil {
			jc.close()
			return nil, jsErr(err)
		}
		jc.subs = append(jc.subs, sub)
	}
	return jc, nil
}

// jsConsumer takes deliveries for a group: from the highest band first.
//
// A fetch first takes what is ready (a no-wait pull on each band, highest
// first). When nothing is, it sends a waiting pull request of one message
// to every band and waits for the first to bring one. JetStream cannot
// withdraw a pull request, so a fetch that ends waits for its requests to
// end (they expire with its context's deadline, or after jsWaitPull); a
// group of several bands returns the first message at once and leaves the
// other bands' requests out for at most jsWaitBands. What those bring is
// kept (its AckWait running) for the handle's next fetch; Close waits for
// requests that are out and hands back (Nak) what was never handed out.
type jsConsumer struct {
	b      *jsBackend
	s      jetstream.Stream
	stream string
	cfg    GroupConfig
	bands  []*jsBandPull // highest band first
	subs   []*nats.Subscription

	mu       sync.Mutex
	cond     *sync.Cond // signalled when a pull request ends
	out      int        // pull requests out
	buf      []jsPulled // pulled while waiting, not yet handed out
	wake     chan struct{}
	closing  chan struct{}
	isClosed bool
}

// jsPulled is a message pulled at a time (its AckWait runs from then).
type jsPulled struct {
	m  jetstream.Msg
	at time.Time
}

type jsBandPull struct {
	bc      jsBandConsumer
	cons    jetstream.Consumer
	pulling bool // a waiting pull request is out (jsConsumer.mu)
}

// jsWaitPull bounds a waiting pull request of a one-band group, and
// jsWaitBands one of a group of several bands.
const (
	jsWaitPull  = time.Second
	jsWaitBands = 250 * time.Millisecond
)

func (c *jsConsumer) fetch(ctx context.Context, n int) ([]*Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			c.waitPulls()
			return nil, err
		}
		c.mu.Lock()
		if c.isClosed {
			c.mu.Unlock()
			return nil, net.ErrClosed
		}
		var msgs []jsPulled
		k := min(n, len(c.buf))
		msgs, c.buf = append(msgs, c.buf[:k]...), c.buf[k:]
		c.mu.Unlock()
		for _, bp := range c.bands {
			if len(msgs) >= n {
				break
			}
			at := time.Now()
			batch, err := bp.cons.FetchNoWait(n - len(msgs))
			if err != nil {
				return c.putBack(msgs, jsErr(err))
			}
			for m := range batch.Messages() {
				msgs = append(msgs, jsPulled{m, at})
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return c.putBack(msgs, jsErr(err))
			}
		}
		out := c.deliveries(ctx, msgs)
		if len(out) > 0 {
			if len(c.bands) == 1 {
				c.waitPulls()
			}
			return out, nil
		}
		if len(msgs) > 0 {
			continue // all dead-lettered: look again at once
		}
		c.startPulls(ctx)
		select {
		case <-c.wake:
		case <-ctx.Done():
			c.waitPulls()
			return nil, ctx.Err()
		case <-c.closing:
			return nil, net.ErrClosed
		}
	}
}

// waitPulls waits until no pull request of this handle is out.
func (c *jsConsumer) waitPulls() {
	c.mu.Lock()
	for c.out > 0 {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// putBack keeps messages pulled before an error for the next fetch.
func (c *jsConsumer) putBack(msgs []jsPulled, err error) ([]*Delivery, error) {
	c.mu.Lock()
	c.buf = append(msgs, c.buf...)
	c.mu.Unlock()
	return nil, err
}

// startPulls sends a waiting pull request of one message to every band
// that has none out; what they bring is kept in buf and wakes fetch.
func (c *jsConsumer) startPulls(ctx context.Context) {
	w := jsWaitPull
	if len(c.bands) > 1 {
		w = jsWaitBands
	}
	if dl, ok := ctx.Deadline(); ok {
		w = max(min(w, time.Until(dl)), 10*time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return
	}
	for _, bp := range c.bands {
		if bp.pulling {
			continue
		}
		batch, err := bp.cons.Fetch(1, jetstream.FetchMaxWait(w))
		if err != nil {
			continue // the next fetch's look will say what is wrong
		}
		bp.pulling = true
		c.out++
		go func() {
			var got []jsPulled
			for m := range batch.Messages() {
				// AckWait runs from the delivery, not from the request.
				got = append(got, jsPulled{m, time.Now()})
			}
			c.mu.Lock()
			bp.pulling = false
			c.out--
			c.buf = append(c.buf, got...)
			c.cond.Broadcast()
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}()
	}
}

// deliveries turns pulled messages into deliveries, highest band first;
// a message past its attempts is dead-lettered and terminated instead.
func (c *jsConsumer) deliveries(ctx context.Context, msgs []jsPulled) []*Delivery {
	var out []*Delivery
	for _, p := range msgs {
		m := p.m
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		sm := storedMessage(c.stream, md.Sequence.Stream, m.Subject(), m.Headers(), m.Data(), md.Timestamp)
		d := &Delivery{StoredMessage: sm, Attempt: int(md.NumDelivered), Deadline: p.at.Add(c.cfg.AckWait)}
		d.s = &jsSettler{c: c, m: m, h: m.Headers()}
		if c.cfg.MaxDeliver > 0 && d.Attempt > c.cfg.MaxDeliver {
			d.Attempt = c.cfg.MaxDeliver
			_ = d.s.(*jsSettler).deadLetter(ctx, d, "max-deliver")
			continue
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		return out[i].Seq < out[j].Seq
	})
	return out
}

func (c *jsConsumer) close() error {
	c.mu.Lock()
	if c.isClosed {
		c.mu.Unlock()
		return nil
	}
	c.isClosed = true
	close(c.closing)
	c.mu.Unlock()
	var errs []error
	for _, s := range c.subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	c.waitPulls()
	// Messages pulled and never handed out go back at once.
	c.mu.Lock()
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	for _, p := range buf {
		_ = p.m.Nak()
	}
	return errors.Join(errs...)
}

// advisory handles a MAX_DELIVERIES or MSG_TERMINATED advisory of the
// stream: when it is about this group and mq did not dead-letter the
// message itself, the message is read back and dead-lettered.
func (c *jsConsumer) advisory(msg *nats.Msg) {
	var a struct {
		Consumer   string `json:"consumer"`
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
		Reason     string `json:"reason"`
	}
	if json.Unmarshal(msg.Data, &a) != nil || a.Reason == jsOwnTermReason {
		return
	}
	ours := false
	for _, bp := range c.bands {
		ours = ours || bp.bc.name == a.Consumer
	}
	if !ours {
		return
	}
	reason := "max-deliver"
	if strings.HasPrefix(msg.Subject, jsAdvisoryTerm) {
		reason = "terminated"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rm, err := c.s.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		return // gone: nothing left to dead-letter
	}
	d := &Delivery{StoredMessage: storedMessage(c.stream, rm.Sequence, rm.Subject, rm.Header, rm.Data, rm.Time),
		Attempt: a.Deliveries}
	if c.cfg.MaxDeliver > 0 {
		d.Attempt = min(d.Attempt, c.cfg.MaxDeliver)
	}
	(&jsSettler{c: c, h: rm.Header}).publishDead(ctx, d, reason)
}

// jsSettler settles one delivery through its JetStream ack subject, and
// waits for the server's reply.
type jsSettler struct {
	c *jsConsumer
	m jetstream.Msg
	h nats.Header
}

func (s *jsSettler) reply(ctx context.Context, d *Delivery, body string) error {
	if time.Now().After(d.Deadline) {
		return fmt.Errorf("%w: AckWait ran out at %s", ErrDeliveryLost, d.Deadline.Format(time.RFC3339Nano))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	_, err := s.c.b.nc.RequestWithContext(ctx, s.m.Reply(), []byte(body))
	return jsErr(err)
}

func (s *jsSettler) ack(ctx context.Context, d *Delivery) error {
	return s.reply(ctx, d, "+ACK")
}

func (s *jsSettler) nak(ctx context.Context, d *Delivery, delay time.Duration) error {
	if md := s.c.cfg.MaxDeliver; md > 0 && d.Attempt >= md {
		return s.deadLetter(ctx, d, "max-deliver")
	}
	if delay == 0 && len(s.c.cfg.Backoff) > 0 {
		delay = s.c.cfg.Backoff[min(d.Attempt-1, len(s.c.cfg.Backoff)-1)]
	}
	if delay == 0 {
		return s.reply(ctx, d, "-NAK")
	}
	return s.reply(ctx, d, fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds()))
}

func (s *jsSettler) inProgress(ctx context.Context, d *Delivery) error {
	if err := s.reply(ctx, d, "+WPI"); err != nil {
		return err
	}
	d.Deadline = time.Now().Add(s.c.cfg.AckWait)
	return nil
}

func (s *jsSettler) term(ctx context.Context, d *Delivery, reason string) error {
	return s.deadLetter(ctx, d, reason)
}

// deadLetter publishes the delivery to the group's dead-letter stream
// (when it has one), then terminates it.
func (s *jsSettler) deadLetter(ctx context.Context, d *Delivery, reason string) error {
	if time.Now().After(d.Deadline) {
		return fmt.Errorf("%w: AckWait ran out at %s", ErrDeliveryLost, d.Deadline.Format(time.RFC3339Nano))
	}
	if err := s.publishDead(ctx, d, reason); err != nil {
		return err
	}
	return s.reply(ctx, d, "+TERM "+jsOwnTermReason)
}

// publishDead stores the dead letter once: its Nats-Msg-Id names the
// stream, group and sequence, so that several consumers (or an advisory
// and a consumer) publishing the same one store it once.
func (s *jsSettler) publishDead(ctx context.Context, d *Delivery, reason string) error {
	dl := s.c.cfg.DeadLetter
	if dl == "" {
		return nil
	}
	m := nats.NewMsg(jsDeadSubject(dl, d.Priority, s.c.stream, s.c.cfg.Name))
	m.Data = d.Data
	for k, v := range s.h {
		if !strings.HasPrefix(k, "Nats-") && k != jsHeaderNotBef && k != jsHeaderID {
			m.Header[k] = v
		}
	}
	m.Header.Set(HeaderDeadStream, s.c.stream)
	m.Header.Set(HeaderDeadGroup, s.c.cfg.Name)
	m.Header.Set(HeaderDeadSeq, strconv.FormatUint(d.Seq, 10))
	m.Header.Set(HeaderDeadReason, reason)
	m.Header.Set(HeaderDeadAttempts, strconv.Itoa(d.Attempt))
	id := fmt.Sprintf("mq-dead.%s.%s.%d", s.c.stream, s.c.cfg.Name, d.Seq)
	_, err := s.c.b.js.PublishMsg(ctx, m, jetstream.WithMsgID(id))
	return jsErr(err)
}
