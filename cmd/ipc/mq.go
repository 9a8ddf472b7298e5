package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/mq"
)

func newMQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mq",
		Short: "Publish to, consume from and inspect durable message queues",
		Long: `mq works on the queues of package mq, against either backend by address:
file:///dir (the local backend: a directory shared by processes; a bare
absolute path means the same) or nats://host:port (NATS JetStream).

  ipc mq serve --store DIR                 an embedded NATS server with JetStream
  ipc mq pub ADDR STREAM [DATA|-]          publish (--count N for many, --create)
  ipc mq consume ADDR STREAM GROUP         take deliveries and ack, nak or term them
  ipc mq ls ADDR [STREAM]                  streams and groups: depth, in flight, ...
  ipc mq dlq ls ADDR DLQ                   the messages of a dead-letter stream
  ipc mq dlq replay ADDR DLQ [-n N]        move them back to their streams
  ipc mq check DIR                         verify a local queue directory`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown mq command %q", args[0])}
			}
			return usageError{errors.New("missing mq command (serve, pub, consume, ls, dlq, check)")}
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}
	dlq := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and replay a dead-letter stream",
		Args: func(cmd *cobra.Command, args []string) error {
			return usageError{errors.New("missing dlq command (ls, replay)")}
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}
	dlq.AddCommand(newMQDLQLsCmd(), newMQDLQReplayCmd())
	cmd.AddCommand(newMQServeCmd(), newMQPubCmd(), newMQConsumeCmd(), newMQLsCmd(), dlq, newMQCheckCmd())
	return cmd
}

// openTimeout bounds the connection and recovery of mq.Open.
const openTimeout = 15 * time.Second

// queueAddr turns a bare absolute path into a file:// address.
func queueAddr(s string) string {
	if strings.HasPrefix(s, "/") {
		return "file://" + s
	}
	return s
}

// openQueue opens the queue at addr.
func openQueue(ctx context.Context, addr string) (*mq.Queue, error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	return mq.Open(octx, queueAddr(addr), nil)
}

// parseSync reads a --sync value: always, none or every=D.
func parseSync(s string) (mq.SyncPolicy, error) {
	switch v := strings.TrimSpace(s); {
	case v == "always":
		return mq.SyncAlways, nil
	case v == "none":
		return mq.SyncNone, nil
	case strings.HasPrefix(v, "every="):
		d, err := time.ParseDuration(strings.TrimPrefix(v, "every="))
		if err != nil || d <= 0 {
			return mq.SyncPolicy{}, fmt.Errorf("bad --sync %q: want every=DURATION with a positive duration, e.g. every=100ms", s)
		}
		return mq.SyncEvery(d), nil
	}
	return mq.SyncPolicy{}, fmt.Errorf("bad --sync %q: want always, none or every=DURATION", s)
}

// parseHeaders reads --header k=v flags.
func parseHeaders(kvs []string) (mq.Header, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	h := mq.Header{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("bad --header %q: want KEY=VALUE", kv)
		}
		h[k] = append(h[k], v)
	}
	return h, nil
}

// progress writes a progress line for a long operation at most once a
// second: rewritten in place on a terminal, one line a second otherwise.
type progress struct {
	w     io.Writer // nil: no progress
	label string
	total int // 0: unknown
	start time.Time
	last  time.Time
	tty   bool
	shown bool
}

func newProgress(w io.Writer, quiet bool, label string, total int) *progress {
	p := &progress{label: label, total: total, start: time.Now()}
	p.last = p.start
	if !quiet {
		p.w = w
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				p.tty = true
			}
		}
	}
	return p
}

func (p *progress) line(n int) string {
	el := time.Since(p.start)
	rate := float64(n) / max(el.Seconds(), 1e-9)
	if p.total > 0 {
		return fmt.Sprintf("%s %d/%d (%d%%), %.0f msg/s, %v", p.label, n, p.total, n*100/p.total, rate, el.Round(time.Second))
	}
	return fmt.Sprintf("%s %d, %.0f msg/s, %v", p.label, n, rate, el.Round(time.Second))
}

// update reports n done, if a second has passed since the last line.
func (p *progress) update(n int) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < time.Second {
		return
	}
	p.last, p.shown = now, true
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(n))
	} else {
		fmt.Fprintln(p.w, p.line(n))
	}
}

// done ends the progress line, if one was shown.
func (p *progress) done(n int) {
	if p.w == nil || !p.shown {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s\n", p.line(n))
	} else {
		fmt.Fprintln(p.w, p.line(n))
	}
}

// pubJSON is the output of `mq pub --json` for one message.
type pubJSON struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// pubManyJSON is the output of `mq pub --count N --json`.
type pubManyJSON struct {
	Stream     string  `json:"stream"`
	Published  int     `json:"published"`
	Duplicates int     `json:"duplicates"`
	FirstSeq   uint64  `json:"first_seq"`
	LastSeq    uint64  `json:"last_seq"`
	ElapsedS   float64 `json:"elapsed_s"`
	MsgsPerS   float64 `json:"msgs_per_s"`
}

func newMQPubCmd() *cobra.Command {
	var (
		id, key, syncFlag string
		delay             time.Duration
		priority, count   int
		headers           []string
		create, asJSON    bool
		quiet             bool
	)
	cmd := &cobra.Command{
		Use:   "pub ADDR STREAM [DATA|-]",
		Short: "Publish a message (or --count N of them) to a stream",
		Long: `pub publishes DATA (or standard input with -, or an empty message) to STREAM
and prints its sequence number once it is durable under the stream's sync
policy. --count N publishes it N times (with --id, the ids are ID-1 ... ID-N)
with a progress line on stderr. --create creates the stream first (with
--sync always, none or every=DURATION); an existing stream of the same
configuration is used as it is.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.RangeArgs(2, 3)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 {
				return usageError{fmt.Errorf("bad --count %d: want at least 1", count)}
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return usageError{err}
			}
			var sync mq.SyncPolicy
			if create {
				if sync, err = parseSync(syncFlag); err != nil {
					return usageError{err}
				}
			} else if cmd.Flags().Changed("sync") {
				return usageError{errors.New("--sync needs --create")}
			}
			var data []byte
			if len(args) == 3 {
				if args[2] == "-" {
					if data, err = io.ReadAll(cmd.InOrStdin()); err != nil {
						return fmt.Errorf("read standard input: %w", err)
					}
				} else {
					data = []byte(args[2])
				}
			}
			ctx := cmd.Context()
			q, err := openQueue(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			stream := args[1]
			if create {
				if _, err := q.CreateStream(ctx, mq.StreamConfig{Name: stream, Sync: sync}); err != nil {
					return err
				}
			}
			opts := &mq.PublishOptions{Header: h, ID: id, Key: key, Delay: delay, Priority: priority}
			out := cmd.OutOrStdout()
			if count == 1 && !cmd.Flags().Changed("count") {
				pa, err := q.Publish(ctx, stream, data, opts)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(out, pubJSON{Stream: pa.Stream, Seq: pa.Seq, Duplicate: pa.Duplicate})
				}
				dup := ""
				if pa.Duplicate {
					dup = " (duplicate: stored before)"
				}
				fmt.Fprintf(out, "published %s seq %d%s\n", stream, pa.Seq, dup)
				return nil
			}
			res := pubManyJSON{Stream: stream}
			p := newProgress(cmd.ErrOrStderr(), quiet, "published", count)
			start := time.Now()
			for i := range count {
				o := *opts
				if id != "" {
					o.ID = fmt.Sprintf("%s-%d", id, i+1)
				}
				pa, err := q.Publish(ctx, stream, data, &o)
				if err != nil {
					p.done(res.Published)
					return fmt.Errorf("after %d published: %w", res.Published, err)
				}
				if res.FirstSeq == 0 {
					res.FirstSeq = pa.Seq
				}
				res.LastSeq = pa.Seq
				res.Published++
				if pa.Duplicate {
					res.Duplicates++
				}
				p.update(res.Published)
			}
			el := time.Since(start)
			p.done(res.Published)
			res.ElapsedS = el.Seconds()
			res.MsgsPerS = float64(res.Published) / max(el.Seconds(), 1e-9)
			if asJSON {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "published %d messages to %s (seq %d..%d, %d duplicates) in %v: %.0f msg/s\n",
				res.Published, stream, res.FirstSeq, res.LastSeq, res.Duplicates, el.Round(time.Millisecond), res.MsgsPerS)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "message id for deduplication")
	f.StringVar(&key, "key", "", "message key (per-key ordering)")
	f.DurationVar(&delay, "delay", 0, "deliverable after this delay")
	f.IntVar(&priority, "priority", 0, fmt.Sprintf("priority band 0..%d", mq.MaxPriority))
	f.StringArrayVar(&headers, "header", nil, "header `KEY=VALUE` (repeatable)")
	f.IntVar(&count, "count", 1, "publish the message `N` times")
	f.BoolVar(&create, "create", false, "create the stream if it does not exist")
	f.StringVar(&syncFlag, "sync", "always", "with --create: durability, always, none or every=DURATION")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line")
	return cmd
}

// messageJSON is a message as `mq consume --json` and `mq dlq ls --json`
// print it. Data that is not UTF-8 is given in data_base64 instead.
type messageJSON struct {
	Stream     string              `json:"stream"`
	Group      string              `json:"group,omitempty"`
	Seq        uint64              `json:"seq"`
	Attempt    int                 `json:"attempt,omitempty"`
	ID         string              `json:"id,omitempty"`
	Key        string              `json:"key,omitempty"`
	Priority   int                 `json:"priority"`
	Header     map[string][]string `json:"header,omitempty"`
	Published  time.Time           `json:"published"`
	Data       *string             `json:"data,omitempty"`
	DataBase64 string              `json:"data_base64,omitempty"`
	Settled    string              `json:"settled,omitempty"`
}

func messageOf(m *mq.StoredMessage) messageJSON {
	j := messageJSON{Stream: m.Stream, Seq: m.Seq, ID: m.ID, Key: m.Key, Priority: m.Priority,
		Header: m.Header, Published: m.Published}
	if utf8.Valid(m.Data) {
		s := string(m.Data)
		j.Data = &s
	} else {
		j.DataBase64 = base64.StdEncoding.EncodeToString(m.Data)
	}
	return j
}

// showData quotes data for a text line, cut to max bytes.
func showData(b []byte, maxLen int) string {
	cut := ""
	if maxLen > 0 && len(b) > maxLen {
		b, cut = b[:maxLen], fmt.Sprintf("... (%d B)", len(b))
	}
	return strconv.Quote(string(b)) + cut
}

func newMQConsumeCmd() *cobra.Command {
	var (
		n                     int
		ack, nak, term, noAck bool
		nakDelay, timeout     time.Duration
		createGroup, asJSON   bool
		quiet                 bool
		gcfg                  mq.GroupConfig
		backoff               []time.Duration
		startSeq              uint64
	)
	cmd := &cobra.Command{
		Use:   "consume ADDR STREAM GROUP",
		Short: "Take deliveries of a group and ack, nak or term them",
		Long: `consume takes up to N deliveries (-n; 0: until none comes within --timeout)
of GROUP on STREAM, prints each and settles it: --ack (the default), --nak
(delivered again after --nak-delay or the group's backoff), --term (to the
dead-letter stream) or --no-ack (left to be delivered again). It ends with
an error if no delivery came within --timeout. --create-group creates the
group first (with --ack-wait, --max-deliver, --backoff, --dead-letter).
--json prints one JSON object a line.`,
		Args: exactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, b := range []bool{ack, nak, term, noAck} {
				if b {
					modes++
				}
			}
			if modes > 1 {
				return usageError{errors.New("--ack, --nak, --term and --no-ack exclude each other")}
			}
			if n < 0 {
				return usageError{fmt.Errorf("bad -n %d", n)}
			}
			if timeout <= 0 {
				return usageError{fmt.Errorf("bad --timeout %v: want a positive duration", timeout)}
			}
			settle := "ack"
			switch {
			case nak:
				settle = "nak"
			case term:
				settle = "term"
			case noAck:
				settle = "none"
			}
			ctx := cmd.Context()
			q, err := openQueue(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			stream, group := args[1], args[2]
			if createGroup {
				gcfg.Name, gcfg.Backoff, gcfg.StartSeq = group, backoff, startSeq
				if _, err := q.CreateGroup(ctx, stream, gcfg); err != nil {
					return err
				}
			}
			c, err := q.Consumer(ctx, stream, group)
			if err != nil {
				return err
			}
			defer c.Close()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			p := newProgress(errOut, quiet || n < 1000, "consumed", n)
			done := 0
			for n == 0 || done < n {
				batch := 64
				if n > 0 {
					batch = min(batch, n-done)
				}
				fctx, cancel := context.WithTimeout(ctx, timeout)
				ds, err := c.Fetch(fctx, batch)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if fctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
						if done == 0 {
							return fmt.Errorf("no delivery of %s/%s within %v", stream, group, timeout)
						}
						break
					}
					return fmt.Errorf("after %d deliveries: %w", done, err)
				}
				for _, d := range ds {
					switch settle {
					case "ack":
						err = d.Ack(ctx)
					case "nak":
						err = d.Nak(ctx, nakDelay)
					case "term":
						err = d.Term(ctx)
					}
					if err != nil {
						return fmt.Errorf("%s seq %d: %w", settle, d.Seq, err)
					}
					done++
					if asJSON {
						j := messageOf(&d.StoredMessage)
						j.Group, j.Attempt, j.Settled = d.Group, d.Attempt, settle
						if err := writeJSON(out, j); err != nil {
							return err
						}
					} else if !quiet {
						extra := ""
						if d.Key != "" {
							extra += " key=" + d.Key
						}
						if d.ID != "" {
							extra += " id=" + d.ID
						}
						fmt.Fprintf(out, "%s/%s seq=%d attempt=%d%s %s: %s\n", d.Stream, d.Group, d.Seq, d.Attempt, extra,
							settle, showData(d.Data, 0))
					}
				}
				p.update(done)
			}
			p.done(done)
			if quiet && !asJSON {
				fmt.Fprintf(out, "%d deliveries of %s/%s (%s)\n", done, stream, group, settle)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&n, "count", "n", 1, "take `N` deliveries (0: until none comes within --timeout)")
	f.BoolVar(&ack, "ack", false, "ack each delivery (the default)")
	f.BoolVar(&nak, "nak", false, "nak each delivery")
	f.DurationVar(&nakDelay, "nak-delay", 0, "with --nak: deliver again after this delay (0: the group's backoff)")
	f.BoolVar(&term, "term", false, "terminate each delivery (to the dead-letter stream)")
	f.BoolVar(&noAck, "no-ack", false, "leave each delivery unsettled (delivered again)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "wait this long for a delivery")
	f.BoolVar(&createGroup, "create-group", false, "create the group if it does not exist")
	f.DurationVar(&gcfg.AckWait, "ack-wait", 0, "with --create-group: visibility timeout (default 30s)")
	f.IntVar(&gcfg.MaxDeliver, "max-deliver", 0, "with --create-group: attempts per message (default 5, -1 no bound)")
	f.DurationSliceVar(&backoff, "backoff", nil, "with --create-group: delays before attempt 2, 3, ...")
	f.StringVar(&gcfg.DeadLetter, "dead-letter", "", "with --create-group: the dead-letter `STREAM`")
	f.BoolVar(&gcfg.OrderedByKey, "ordered-by-key", false, "with --create-group: one key's messages in order, one at a time")
	f.Uint64Var(&startSeq, "start-seq", 0, "with --create-group: first sequence to deliver")
	f.BoolVar(&asJSON, "json", false, "print one JSON object a line")
	f.BoolVarP(&quiet, "quiet", "q", false, "do not print deliveries or progress, only a count")
	return cmd
}

// groupJSON is a group as `mq ls --json` prints it.
type groupJSON struct {
	Name          string  `json:"name"`
	Pending       uint64  `json:"pending"`
	InFlight      int     `json:"in_flight"`
	Redelivered   uint64  `json:"redelivered"`
	DeadLettered  uint64  `json:"dead_lettered"`
	AckFloor      uint64  `json:"ack_floor"`
	OldestUnacked float64 `json:"oldest_unacked_age_s"` // 0 when none
	DeadLetter    string  `json:"dead_letter,omitempty"`
	MaxDeliver    int     `json:"max_deliver"`
	AckWaitS      float64 `json:"ack_wait_s"`
	Error         string  `json:"error,omitempty"`
}

// streamJSON is a stream as `mq ls --json` prints it.
type streamJSON struct {
	Name      string      `json:"name"`
	Retention string      `json:"retention"`
	Sync      string      `json:"sync"`
	Msgs      uint64      `json:"msgs"`
	Bytes     uint64      `json:"bytes"`
	FirstSeq  uint64      `json:"first_seq"`
	LastSeq   uint64      `json:"last_seq"`
	Groups    []groupJSON `json:"groups"`
}

func newMQLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls ADDR [STREAM]",
		Short: "List streams and their groups",
		Long: `ls lists the streams of the queue at ADDR (or only STREAM): messages, bytes,
first and last sequence; and for each group the depth (messages not yet
delivered), the deliveries in flight, the redeliveries, the dead letters,
the ack floor and the age of the oldest message not yet acked.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.RangeArgs(1, 2)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			q, err := openQueue(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			var sis []mq.StreamInfo
			if len(args) == 2 {
				si, err := q.StreamInfo(ctx, args[1])
				if err != nil {
					return err
				}
				sis = []mq.StreamInfo{si}
			} else if sis, err = q.Streams(ctx); err != nil {
				return err
			}
			now := time.Now()
			streams := make([]streamJSON, 0, len(sis))
			for _, si := range sis {
				s := streamJSON{Name: si.Config.Name, Retention: si.Config.Retention.String(), Sync: si.Config.Sync.String(),
					Msgs: si.Msgs, Bytes: si.Bytes, FirstSeq: si.FirstSeq, LastSeq: si.LastSeq, Groups: []groupJSON{}}
				for _, g := range si.Groups {
					gi, err := q.GroupInfo(ctx, s.Name, g)
					if err != nil {
						s.Groups = append(s.Groups, groupJSON{Name: g, Error: err.Error()})
						continue
					}
					gj := groupJSON{Name: g, Pending: gi.Pending, InFlight: gi.InFlight, Redelivered: gi.Redelivered,
						DeadLettered: gi.DeadLettered, AckFloor: gi.AckFloor, DeadLetter: gi.Config.DeadLetter,
						MaxDeliver: gi.Config.MaxDeliver, AckWaitS: gi.Config.AckWait.Seconds()}
					if !gi.OldestUnacked.IsZero() {
						gj.OldestUnacked = max(now.Sub(gi.OldestUnacked), 0).Seconds()
					}
					s.Groups = append(s.Groups, gj)
				}
				streams = append(streams, s)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Streams []streamJSON `json:"streams"`
				}{streams})
			}
			if len(streams) == 0 {
				fmt.Fprintf(out, "no streams in %s\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "STREAM\tRETENTION\tSYNC\tMSGS\tBYTES\tFIRST\tLAST\tGROUPS")
			for _, s := range streams {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\n", s.Name, s.Retention, s.Sync, s.Msgs,
					humanBytes(int64(s.Bytes)), s.FirstSeq, s.LastSeq, len(s.Groups))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			groups := 0
			for _, s := range streams {
				groups += len(s.Groups)
			}
			if groups == 0 {
				return nil
			}
			fmt.Fprintln(out)
			tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tPENDING\tIN FLIGHT\tREDELIVERED\tDEAD LETTERS\tACK FLOOR\tOLDEST UNACKED\tDEAD-LETTER STREAM")
			for _, s := range streams {
				for _, g := range s.Groups {
					if g.Error != "" {
						fmt.Fprintf(tw, "%s/%s\terror: %s\n", s.Name, g.Name, g.Error)
						continue
					}
					age := "-"
					if g.OldestUnacked > 0 {
						age = humanAge(time.Duration(g.OldestUnacked * float64(time.Second)))
					}
					dl := g.DeadLetter
					if dl == "" {
						dl = "-"
					}
					fmt.Fprintf(tw, "%s/%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.Name, g.Name, g.Pending, g.InFlight,
						g.Redelivered, g.DeadLettered, g.AckFloor, age, dl)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// deadJSON is a dead-lettered message as `mq dlq ls --json` prints it.
type deadJSON struct {
	messageJSON
	FromStream string `json:"from_stream"`
	FromGroup  string `json:"from_group"`
	FromSeq    uint64 `json:"from_seq"`
	Reason     string `json:"reason"`
	Attempts   int    `json:"attempts"`
}

func newMQDLQLsCmd() *cobra.Command {
	var (
		asJSON bool
		n      int
		from   uint64
	)
	cmd := &cobra.Command{
		Use:   "ls ADDR DLQSTREAM",
		Short: "List the messages of a dead-letter stream",
		Long: `dlq ls lists up to N messages (-n) of a dead-letter stream from sequence
--from on: where each came from (stream, group, sequence), why (max-deliver
or terminated), after how many attempts, and its data.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 1 {
				return usageError{fmt.Errorf("bad -n %d: want at least 1", n)}
			}
			ctx := cmd.Context()
			q, err := openQueue(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			ms, err := q.Read(ctx, args[1], from, n)
			if err != nil {
				return err
			}
			dead := make([]deadJSON, 0, len(ms))
			for i := range ms {
				m := &ms[i]
				d := deadJSON{messageJSON: messageOf(m), FromStream: m.Header.Get(mq.HeaderDeadStream),
					FromGroup: m.Header.Get(mq.HeaderDeadGroup), Reason: m.Header.Get(mq.HeaderDeadReason)}
				d.FromSeq, _ = strconv.ParseUint(m.Header.Get(mq.HeaderDeadSeq), 10, 64)
				d.Attempts, _ = strconv.Atoi(m.Header.Get(mq.HeaderDeadAttempts))
				dead = append(dead, d)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Stream   string     `json:"stream"`
					Messages []deadJSON `json:"messages"`
				}{args[1], dead})
			}
			if len(dead) == 0 {
				fmt.Fprintf(out, "no messages in %s\n", args[1])
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tFROM\tSEQ THERE\tREASON\tATTEMPTS\tAGE\tDATA")
			for i, d := range dead {
				fmt.Fprintf(tw, "%d\t%s/%s\t%d\t%s\t%d\t%s\t%s\n", d.Seq, d.FromStream, d.FromGroup, d.FromSeq, d.Reason,
					d.Attempts, humanAge(now.Sub(d.Published)), showData(ms[i].Data, 40))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.IntVarP(&n, "count", "n", 100, "list at most `N` messages")
	f.Uint64Var(&from, "from", 0, "start at this sequence (0: the first)")
	return cmd
}

func newMQDLQReplayCmd() *cobra.Command {
	var (
		asJSON, quiet bool
		n             int
	)
	cmd := &cobra.Command{
		Use:   "replay ADDR DLQSTREAM [-n N]",
		Short: "Move dead-lettered messages back to their streams",
		Long: `dlq replay moves up to N messages (-n; 0: all) of a dead-letter stream back to
the streams they came from, oldest first, with a fresh attempt count, and
removes them from the dead-letter stream (each is published before it is
removed: a crash in between replays it twice, never loses it).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 0 {
				return usageError{fmt.Errorf("bad -n %d", n)}
			}
			ctx := cmd.Context()
			q, err := openQueue(ctx, args[0])
			if err != nil {
				return err
			}
			defer q.Close()
			p := newProgress(cmd.ErrOrStderr(), quiet, "replayed", n)
			total := 0
			for n == 0 || total < n {
				batch := 256
				if n > 0 {
					batch = min(batch, n-total)
				}
				k, err := q.Replay(ctx, args[1], batch)
				total += k
				if err != nil {
					p.done(total)
					return fmt.Errorf("after %d replayed: %w", total, err)
				}
				p.update(total)
				if k < batch {
					break
				}
			}
			p.done(total)
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Stream   string `json:"stream"`
					Replayed int    `json:"replayed"`
				}{args[1], total})
			}
			fmt.Fprintf(out, "replayed %d messages from %s\n", total, args[1])
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line")
	f.IntVarP(&n, "count", "n", 0, "replay at most `N` messages (0: all)")
	return cmd
}

// checkJSON is the output of `mq check --json`.
type checkJSON struct {
	OK bool `json:"ok"`
	mq.CheckReport
}

func newMQCheckCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Verify a local queue directory",
		Long: `check verifies a queue directory of the local backend (a path, or a file://
address) without changing it: every file's header (magic, version,
checksum), every record's length and CRC and decoding, the order of
sequences, the group journals. It may run while processes use the queue: a
record being appended shows as a torn tail, which recovery truncates and
which does not fail the check. The exit status is 1 if damage was found.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := strings.TrimPrefix(args[0], "file://")
			rep, err := mq.Check(cmd.Context(), dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, checkJSON{OK: rep.OK(), CheckReport: rep}); err != nil {
					return err
				}
			} else {
				printCheck(out, rep)
			}
			if !rep.OK() {
				return silentError{fmt.Errorf("%s: damage found", dir)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printCheck(w io.Writer, rep mq.CheckReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tFILES\tRECORDS\tMESSAGES\tFIRST\tLAST\tGROUPS")
	for _, s := range rep.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Files, s.Records, s.Messages, s.FirstSeq, s.LastSeq,
			strings.Join(s.Groups, ","))
	}
	tw.Flush()
	for _, p := range rep.Problems {
		kind := "DAMAGE"
		if p.Torn {
			kind = "torn tail (recovery truncates it)"
		}
		fmt.Fprintf(w, "%s: %s at offset %d: %s\n", kind, p.File, p.Offset, p.Err)
	}
	if rep.OK() {
		fmt.Fprintf(w, "%s: ok\n", rep.Dir)
	} else {
		fmt.Fprintf(w, "%s: DAMAGED\n", rep.Dir)
	}
}
