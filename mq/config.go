package mq

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Config configures a Queue handle. A nil *Config means DefaultConfig().
type Config struct {
	// Name names this handle in what it records (the owner of in-flight
	// deliveries, shown by `ipc mq ls`). Default "host/pid".
	Name string
	// DirPerm and FilePerm are the modes of directories and files the
	// local backend creates. Default 0700 and 0600.
	DirPerm, FilePerm os.FileMode
	// NATSOptions are added to the connection's options (credentials, TLS,
	// reconnect policy, ...). JetStream backend only.
	NATSOptions []nats.Option
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{DirPerm: 0o700, FilePerm: 0o600}
}

func (c *Config) withDefaults() (Config, error) {
	d := *DefaultConfig()
	if c == nil {
		return d, nil
	}
	out := *c
	if out.DirPerm == 0 {
		out.DirPerm = d.DirPerm
	}
	if out.FilePerm == 0 {
		out.FilePerm = d.FilePerm
	}
	if out.DirPerm&^os.ModePerm != 0 || out.FilePerm&^os.ModePerm != 0 {
		return out, fmt.Errorf("%w: permissions hold bits beyond 0777", ErrBadConfig)
	}
	return out, nil
}

// Retention says when a stream's messages are removed.
type Retention int

const (
	// LimitsPolicy keeps messages until a limit (MaxAge, MaxBytes,
	// MaxMsgs) removes the oldest. Every group sees every message.
	LimitsPolicy Retention = iota
	// WorkQueuePolicy removes a message once every group of the stream
	// has acknowledged it (and, as LimitsPolicy, when a limit is hit).
	WorkQueuePolicy
)

func (r Retention) String() string {
	switch r {
	case LimitsPolicy:
		return "limits"
	case WorkQueuePolicy:
		return "workqueue"
	}
	return fmt.Sprintf("Retention(%d)", int(r))
}

// SyncPolicy says when a publish is durable. The zero value is SyncAlways.
type SyncPolicy struct {
	every time.Duration // 0: always; < 0: never
}

var (
	// SyncAlways: a publish returns once its record is on stable storage
	// (fsync), with group commit across concurrent publishers, also across
	// processes. A power loss loses no acknowledged publish.
	SyncAlways = SyncPolicy{}
	// SyncNone: a publish returns once its record is in the file (the OS
	// page cache). A process killed -9 loses nothing acknowledged; a power
	// loss or kernel crash can lose what the OS had not yet written.
	SyncNone = SyncPolicy{every: -1}
)

// SyncEvery returns the policy that syncs at most d after a publish: a
// publish returns once its record is in the file; a power loss can lose
// the last d of acknowledged publishes. d must be > 0.
func SyncEvery(d time.Duration) SyncPolicy {
	if d <= 0 {
		d = time.Nanosecond
	}
	return SyncPolicy{every: d}
}

// Interval returns the sync interval: 0 for SyncAlways, -1 for SyncNone.
func (p SyncPolicy) Interval() time.Duration { return p.every }

func (p SyncPolicy) String() string {
	switch {
	case p.every == 0:
		return "always"
	case p.every < 0:
		return "none"
	}
	return "every " + p.every.String()
}

// MarshalText returns String(), so that a SyncPolicy reads well in JSON.
func (p SyncPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses what String returns: "always", "none" or
// "every <duration>".
func (p *SyncPolicy) UnmarshalText(b []byte) error {
	s := string(b)
	switch s {
	case "always":
		*p = SyncAlways
		return nil
	case "none":
		*p = SyncNone
		return nil
	}
	if d, ok := strings.CutPrefix(s, "every "); ok {
		if v, err := time.ParseDuration(d); err == nil && v > 0 {
			*p = SyncEvery(v)
			return nil
		}
	}
	return fmt.Errorf("%w: sync policy %q (always, none or every <duration>)", ErrBadConfig, s)
}

// StreamConfig describes a stream. Zero fields take the defaults named.
type StreamConfig struct {
	// Name: 1 to 64 of [A-Za-z0-9_-].
	Name      string
	Retention Retention
	// MaxAge, MaxBytes and MaxMsgs bound what is kept; 0 means no limit.
	MaxAge   time.Duration
	MaxBytes int64
	MaxMsgs  int64
	// MaxMsgSize bounds one message's data plus headers. Default 1 MiB;
	// at most 64 MiB.
	MaxMsgSize int
	// Sync is the durability policy. Default SyncAlways.
	Sync SyncPolicy
	// DuplicateWindow is how long a message id is remembered for
	// deduplication. Default 2 minutes.
	DuplicateWindow time.Duration
	// SegmentBytes is the size at which the local backend starts a new
	// log file (old files are deleted as retention allows). Default
	// 64 MiB. Ignored by the JetStream backend.
	SegmentBytes int64
	// Replicas is the number of JetStream replicas. Default 1. Ignored by
	// the local backend.
	Replicas int
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

const (
	defaultMaxMsgSize      = 1 << 20
	maxMsgSizeLimit        = 64 << 20
	defaultDuplicateWindow = 2 * time.Minute
	defaultSegmentBytes    = 64 << 20
)

func validName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q (1 to 64 of A-Z a-z 0-9 _ -)", ErrBadConfig, kind, name)
	}
	return nil
}

// withDefaults returns c with the defaults filled in, or an error wrapping
// ErrBadConfig.
func (c StreamConfig) withDefaults() (StreamConfig, error) {
	if err := validName("stream", c.Name); err != nil {
		return c, err
	}
	if c.Retention != LimitsPolicy && c.Retention != WorkQueuePolicy {
		return c, fmt.Errorf("%w: retention %d", ErrBadConfig, int(c.Retention))
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.MaxMsgs < 0 || c.MaxMsgSize < 0 ||
		c.DuplicateWindow < 0 || c.SegmentBytes < 0 || c.Replicas < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrBadConfig)
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = defaultMaxMsgSize
	}
	if c.MaxMsgSize > maxMsgSizeLimit {
		return c, fmt.Errorf("%w: MaxMsgSize %d above %d", ErrBadConfig, c.MaxMsgSize, maxMsgSizeLimit)
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = defaultDuplicateWindow
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c, nil
}

// GroupConfig describes a consumer group of a stream. Every group receives
// every message of the stream; the consumers of one group compete for
// them. Zero fields take the defaults named.
type GroupConfig struct {
	// Name: 1 to 64 of [A-Za-z0-9_-].
	Name string
	// AckWait is the visibility timeout: a delivery not acked, nakked or
	// extended (InProgress) within it is delivered again. Default 30 s.
	// A delivery held by a consumer whose process died is delivered again
	// as soon as the death is seen (local backend), not after AckWait.
	AckWait time.Duration
	// MaxDeliver bounds the attempts per message; a message that used
	// them all goes to DeadLetter. Default 5; -1 means no bound.
	MaxDeliver int
	// Backoff is the delay before attempt 2, 3, ... after a failed one
	// (Nak without delay, or AckWait ran out); the last entry repeats.
	// Empty: redeliver at once after a Nak, after AckWait otherwise.
	Backoff []time.Duration
	// DeadLetter names the stream that receives the messages that used
	// all attempts or were terminated (Term), with the headers
	// HeaderDeadStream, HeaderDeadGroup, HeaderDeadSeq, HeaderDeadReason
	// and HeaderDeadAttempts. "" means such messages are dropped. The
	// stream is created with defaults if it does not exist.
	DeadLetter string
	// OrderedByKey delivers the messages of one key (PublishOptions.Key)
	// in order and one at a time: the next message of a key is delivered
	// once the previous one is acked or dead-lettered. Messages of other
	// keys, and messages without a key, proceed in parallel.
	OrderedByKey bool
	// StartSeq is the first sequence the group delivers. 0 means the
	// first message the stream still has.
	StartSeq uint64
}

const (
	defaultAckWait    = 30 * time.Second
	defaultMaxDeliver = 5
)

func (c GroupConfig) withDefaults() (GroupConfig, error) {
	if err := validName("group", c.Name); err != nil {
		return c, err
	}
	if c.AckWait < 0 || c.MaxDeliver < -1 {
		return c, fmt.Errorf("%w: negative AckWait or MaxDeliver below -1", ErrBadConfig)
	}
	for _, b := range c.Backoff {
		if b < 0 {
			return c, fmt.Errorf("%w: negative backoff", ErrBadConfig)
		}
	}
	if c.DeadLetter != "" {
		if err := validName("dead-letter stream", c.DeadLetter); err != nil {
			return c, err
		}
	}
	if c.AckWait == 0 {
		c.AckWait = defaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = defaultMaxDeliver
	}
	return c, nil
}

// MaxPriority is the highest priority band. Among the messages of a
// stream that are ready for a group, a higher band is delivered first;
// within a band, in sequence order.
const MaxPriority = 3

// PublishOptions are the optional parts of a publish. nil means none.
type PublishOptions struct {
	// Header is carried with the message. Keys beginning "Mq-" and
	// "Nats-" are reserved.
	Header Header
	// ID deduplicates: a second publish of the same ID on the stream
	// within its DuplicateWindow is not stored again; its PubAck has
	// Duplicate set and the first one's Seq.
	ID string
	// Key groups messages for GroupConfig.OrderedByKey.
	Key string
	// Delay, or At when later, is when the message becomes deliverable
	// (scheduled jobs). Zero: at once.
	Delay time.Duration
	At    time.Time
	// Priority is the band, 0 (default) to MaxPriority.
	Priority int
}

func (o *PublishOptions) validate() error {
	if o == nil {
		return nil
	}
	if o.Priority < 0 || o.Priority > MaxPriority {
		return fmt.Errorf("%w: priority %d outside 0..%d", ErrBadConfig, o.Priority, MaxPriority)
	}
	if o.Delay < 0 {
		return fmt.Errorf("%w: negative delay", ErrBadConfig)
	}
	for k := range o.Header {
		if hasReservedPrefix(k) {
			return fmt.Errorf("%w: header %q is reserved", ErrBadConfig, k)
		}
	}
	return nil
}

// Header is a message's header, as http.Header and nats.Header.
type Header map[string][]string

// Get returns the first value of key, or "".
func (h Header) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key with value.
func (h Header) Set(key, value string) { h[key] = []string{value} }

// The headers a dead-lettered message carries.
const (
	HeaderDeadStream   = "Mq-Dead-Stream"   // the stream it came from
	HeaderDeadGroup    = "Mq-Dead-Group"    // the group that gave up on it
	HeaderDeadSeq      = "Mq-Dead-Seq"      // its sequence in that stream
	HeaderDeadReason   = "Mq-Dead-Reason"   // "max-deliver" or "terminated"
	HeaderDeadAttempts = "Mq-Dead-Attempts" // attempts made
)

func hasReservedPrefix(k string) bool {
	return len(k) >= 3 && (k[:3] == "Mq-" || (len(k) >= 5 && k[:5] == "Nats-"))
}
