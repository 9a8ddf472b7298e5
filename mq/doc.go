// Package mq is a durable message queue between processes: streams of
// messages, consumer groups, acknowledgements, retries and dead letters,
// with one API over two backends.
//
//   - The local backend, Open(ctx, "file:///var/lib/app/queue", cfg): a
//     directory that any number of processes on one machine open at once,
//     with no daemon. Appends and group changes are serialised by a robust
//     mutex (package procsync) in a shared-memory segment (package shm);
//     waiting consumers are woken through a futex word in that segment;
//     the death of a consumer's process is seen through its shm process
//     slot, and what it held is delivered again at once.
//   - The JetStream backend, Open(ctx, "nats://host:4222", cfg): the same
//     API on a NATS JetStream server or cluster.
//
// # When to use it
//
// Use mq for background jobs, events between services and work queues
// that must survive a crash of any process (and, with SyncAlways, of the
// machine), on one machine without running a broker (local backend), or
// across machines (JetStream). For messages that may be lost, a plain
// connection (package ipc) is simpler and faster.
//
// # Semantics: at least once, deduplicated by id
//
// A Publish that returned without error is stored (see SyncPolicy for
// what a power loss can take). PublishOptions.ID deduplicates: a second
// publish of the same ID within the stream's DuplicateWindow is not stored
// again and gets the first one's sequence (PubAck.Duplicate). Every group
// receives every message; the consumers of one group compete for them.
// A message is delivered to a group at least once: it is delivered again
// when a delivery is nakked, when its AckWait passes without Ack or
// InProgress, when its consumer is closed, and (local backend) as soon as
// its consumer's process is seen dead. A message acked by a group is never
// delivered to that group again, also across crashes of any process. So a
// consumer must be idempotent, or deduplicate by StoredMessage.ID or
// (Stream, Seq). After MaxDeliver attempts, or on Term, a message goes to
// the group's dead-letter stream with the Mq-Dead-* headers; Replay moves
// it back.
//
// # Durability (local backend)
//
// Publish returns once its record was written to the log file with
// write(2), under every policy, so a process killed -9 never loses an
// acknowledged publish: the bytes are in the kernel's page cache.
//
//   - SyncAlways (default): the record is also on stable storage (fsync)
//     before Publish returns. Concurrent publishers, in one process or
//     many, share fsyncs (group commit): a shared "synced up to" position
//     lets a publisher whose record another's fsync covered return without
//     its own. A power loss or kernel crash loses nothing acknowledged.
//   - SyncEvery(d): each process fsyncs the log at most d after its
//     publishes; a power loss can lose the last d of acknowledged
//     publishes.
//   - SyncNone: no fsync; a power loss can lose what the kernel had not
//     yet written back (typically up to 30 s).
//
// Acks, naks and deliveries are written to the group's journal with
// write(2) and are not fsynced: a process crash loses none of them, a
// power loss can lose the last ones, which makes the messages concerned
// delivered again (never lost).
//
// # Crash safety and damage (local backend)
//
// Every record carries its length and a CRC-32C; every file starts with
// a header holding a magic, a layout version and a checksum
// (PROTOCOL.md, "mq local backend"). A process killed while holding a
// stream's mutex leaves at most a torn record: the next process to take
// the mutex gets procsync.ErrOwnerDead and cuts it. A torn or damaged
// record is never delivered. A damaged record between whole ones (a
// flipped bit) is stepped over: its message is lost, the others are
// served, and a copy of the file goes to the directory's quarantine/; a
// damaged record that cannot be stepped over (its length is damaged)
// ends the file there. Check reports every damaged or foreign file with
// the file and offset (*CorruptError, or ErrVersion for a file of another
// layout version or not of this package). A full disk fails the publish
// with the wrapped ENOSPC and cuts the partial record; nothing already
// acknowledged is touched.
//
// # Concurrency contract
//
// A Queue, a Consumer and a Delivery are safe for concurrent use by many
// goroutines. Any number of Queues, in any number of processes, may be
// open on one directory. Every blocking call takes a context. Closing a
// Queue closes its Consumers; the deliveries they held are delivered
// again at once. Calls on a closed Queue or Consumer return an error
// wrapping net.ErrClosed.
//
// # Caveats (local backend)
//
//   - Linux only (shared memory and futexes); elsewhere Open fails with
//     shm.ErrUnsupported.
//   - Each process keeps an index of every stored message in memory
//     (about 50 bytes per message) and reads a stream's whole log and
//     journals when it first uses the stream. A group's journal grows with
//     every delivery and ack until it passes 4 MiB and is mostly settled
//     history; it is then rewritten as the events of its present state.
//   - Priority and per-key ordering are applied within a group's window:
//     the next 512 unsettled messages of the group in sequence order. A
//     higher band published behind more than 512 unsettled lower-band
//     messages waits for them to be settled; the window's messages that
//     are delayed (Delay, Nak) occupy it too.
//   - The death of a consumer's process is seen by the other consumers
//     within about 2 ms while they wait (they look every 2 ms while
//     another process holds deliveries); a process that is stopped
//     (SIGSTOP) is alive.
//   - At most 256 handles across all processes may have one directory
//     open at once (the segment's process slots), and about 300 streams
//     (its object directory).
//   - The directory's segment is /dev/shm/ipcmq-<id>; it is removed by the
//     last handle's Close and, if every process using it died, made afresh
//     by the next Open, since the files hold the whole state.
//   - A damaged length field that makes a record reach past the end of the
//     file looks like a torn tail: the records after it are cut.
//
// # JetStream backend
//
// Open(ctx, "nats://host:4222[,nats://host2:4222...]", cfg) speaks to a
// NATS server or cluster with JetStream through nats.go's jetstream
// package; Config.NATSOptions are added to the connection's options
// (credentials, TLS, reconnects). A server without JetStream is
// ErrUnsupported. The mapping, so that other NATS clients can use the
// same streams:
//
//   - Stream S is the JetStream stream "MQ_S" (file storage, subjects
//     "mq.S.>", direct get on). A message of band b is stored on subject
//     "mq.S.p<b>.m"; its Key in the header Mq-Key, its ID as Nats-Msg-Id
//     (JetStream's deduplication, window DuplicateWindow, at most MaxAge).
//     MaxAge, MaxBytes, MaxMsgs, MaxMsgSize and Replicas are JetStream's;
//     SegmentBytes is ignored. The mq configuration is kept in the
//     stream's metadata ("mq.cfg"), which CreateStream compares.
//   - LimitsPolicy is JetStream's limits retention. WorkQueuePolicy is
//     JetStream's interest retention (its workqueue retention allows one
//     consumer per subject, not several groups): a message goes once every
//     group has acked or terminated it. Unlike the local backend, a
//     message published while the stream has no group is not kept.
//   - Group G is a set of durable pull consumers: "G_p3" .. "G_p0", one
//     per priority band (filter "mq.S.p<b>.>"), explicit acks, AckWait,
//     MaxDeliver+1 (below), StartSeq as DeliverByStartSequence. A fetch
//     takes from the highest band first. Consumers of several processes
//     compete through the same durable consumers.
//   - Backoff: JetStream's BackOff is the whole wait of each attempt, so
//     mq gives it AckWait+Backoff[i]: a delivery that runs out of AckWait
//     comes back Backoff[i] later, as on the local backend. A Nak without
//     delay is a Nak with delay Backoff[attempt-1] (the last repeats), sent
//     by mq; Nak(d) is JetStream's NakWithDelay(d); InProgress is +WPI.
//     Every settle waits for the server's reply.
//   - Delay and At are JetStream message schedules (nats-server 2.12 and
//     later): the publish stores a schedule on "mq.S.s.<nuid>" that the
//     server turns into the message on "mq.S.p<b>.m" when it is due. The
//     PubAck's Seq is the schedule's; the message is delivered with a new
//     sequence (Delivery.Seq differs from the PubAck), its Published time
//     is when it became due, and NotBefore (header Mq-Not-Before) is kept.
//     Read shows a pending schedule as a message with NotBefore set. On a
//     WorkQueuePolicy stream the consumer "mq_schedules", never pulled,
//     keeps schedules until they fire.
//   - Dead letters: a Term, or a Nak of the last attempt, is published by
//     mq to the dead-letter stream D on "mq.D.p<b>.d.S.G" with the
//     Mq-Dead-* headers and Nats-Msg-Id "mq-dead.S.G.<seq>" (so that one
//     dead letter published twice, by two consumers or by a consumer and
//     an advisory, is stored once), then terminated. A delivery whose last
//     attempt ran out of AckWait comes back once more (JetStream's
//     MaxDeliver is one above mq's) to a fetching consumer of mq, which
//     dead-letters it instead of handing it out. As a backstop every
//     Consumer handle subscribes (one queue group per group) to
//     $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.MQ_S.* and
//     ...MSG_TERMINATED.MQ_S.*: a message JetStream gave up on, or that
//     another client terminated, is read back by sequence and
//     dead-lettered the same way (if retention has not removed it yet).
//     GroupInfo.DeadLettered counts the group's dead letters still in D.
//   - Read is JetStream's message get (next by subject from seq), Replay's
//     delete is JetStream's message delete.
//   - GroupInfo comes from the consumers' ConsumerInfo, summed over bands:
//     Pending (NumPending), InFlight (NumAckPending), AckFloor (the lowest
//     band floor), OldestUnacked (the message after it). Redelivered is
//     JetStream's NumRedelivered: the redelivered messages not yet
//     settled, not a running total as on the local backend.
//   - Errors: stream not found (and a publish no stream answers) is
//     ErrStreamNotFound, consumer not found ErrGroupNotFound, a message
//     above MaxMsgSize or the server's max_payload ErrTooLarge, a passed
//     deadline context.DeadlineExceeded (a net.Error timeout).
//
// Where JetStream's semantics differ, and how mq states them:
//
//   - Durability is the server's, not the stream's: JetStream fsyncs per
//     server (sync_interval). StreamConfig.Sync is kept in the metadata
//     but does not change what the server does. SyncAlways holds when the
//     server runs with sync_interval: always (natsserver.Config.SyncAlways);
//     SyncEvery(d) with sync_interval d (natsserver.Config.SyncInterval;
//     the default is 2 minutes); SyncNone has no equivalent (the server
//     syncs at its interval anyway). A publish is acknowledged once the
//     stream's leader stored it (and, with Replicas 3, a quorum of two), so
//     with three replicas the loss of one server loses nothing
//     acknowledged, whatever the interval.
//   - A dead consumer is seen only when its AckWait runs out: the
//     deliveries held by a process that died come back after AckWait (the
//     local backend sees the death at once). A Consumer that is closed
//     hands its held deliveries back at once (a Nak), which counts as an
//     attempt. An Ack, Nak, Term or InProgress after the delivery's
//     Deadline is refused with ErrDeliveryLost without reaching the server
//     (it may have given the message to another consumer).
//   - Waiting: JetStream cannot withdraw a pull request. A Fetch that finds
//     nothing sends a waiting pull request of one message to every band
//     and waits; when it returns, the other bands' requests stay out for
//     at most 250 ms, and what they bring is kept, its AckWait running, for
//     that handle's next Fetch (or handed back by Close).
//   - OrderedByKey is bridged, not matched: JetStream has no per-key
//     MaxAckPending, so such a group is one consumer "G_pa" over every
//     band with MaxAckPending 1. One key's messages are delivered in order
//     and one at a time, but so is everything else in the group: other
//     keys wait, and priority bands are not applied (stream order).
//   - Messages past MaxAge are removed by the server's expiry timer,
//     which may run some hundreds of milliseconds late.
package mq
