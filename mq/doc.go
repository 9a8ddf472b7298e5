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
package mq
