// Package mqbench runs `ipc bench mq`: it measures the queues of package
// mq across processes, next to NATS JetStream on the same disk at the same
// durability, measured in the same run.
//
// Every measurement uses real processes: this program re-executed under
// the hidden PeerCommand as producers, consumers and, for the JetStream
// baseline, the embedded nats-server (a child process with its store in
// the run's directory, `sync_interval: always` against mq.SyncAlways, the
// same interval against mq.SyncEvery). The parent creates the stream (and
// groups) on a fresh store, starts the processes, waits until each says it
// is ready, and gives them one window in wall-clock time:
//
//   - publish: 1 or 4 producer processes each publish messages of one
//     size, one at a time, as fast as the store acknowledges them; the
//     publishes that complete inside the window, after a warm-up, are
//     counted;
//   - consume+ack: the stream the 4 producers filled (64 B) is drained by
//     a new group with 1 consumer process, then by another new group with
//     4 competing consumer processes, each fetching up to 64 deliveries and
//     acking each; the rate is the messages acked over the time from the
//     start to the last ack;
//   - latency: one producer publishes a message carrying its wall-clock
//     send time every millisecond (after the previous publish returned);
//     one consumer, idle and waiting in Next, records publish→deliver
//     times in an HDR histogram.
//
// JetStream is driven with nats.go's jetstream package directly (a
// synchronous Publish, a pull consumer with explicit acks, Fetch of up to
// 64, Ack without waiting for the server's confirmation, a final Flush),
// so the baseline is JetStream itself, not package mq's JetStream
// backend; the "mq-nats" system measures that backend when asked for.
// JetStream has no counterpart of mq.SyncNone: that policy is measured for
// the local backend only.
//
// Every process has a time limit; the run's directory is removed and
// every process is gone when Run returns.
package mqbench
