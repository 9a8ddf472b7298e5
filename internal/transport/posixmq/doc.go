// Package posixmq is the transport of posixmq:///name addresses: message
// connections over POSIX message queues (mq_overview(7)), Linux only,
// through the raw system calls mq_open, mq_timedsend, mq_timedreceive,
// mq_unlink and mq_getsetattr.
//
// A connection is a pair of queues, one per direction; the listener owns a
// control queue, at the name itself, where clients post connection
// requests. The protocol, peer-death detection and limits are described in
// PROTOCOL.md, "POSIX message queue transport". In short:
//
//   - Listen takes an OFD lock on a lock file in /dev/shm
//     (.ipc-mq-<name>.lock) for its lifetime, so that a live listener is
//     told from a stale queue left by a dead one (ErrAddrInUse, or the
//     stale queue is replaced), and creates the control queue with
//     Options.Perm (exactly, whatever the umask).
//   - Dial creates a liveness file (.ipc-mq-<name>.<id>.live in /dev/shm)
//     and the queues <name>.<id>.c2s and <name>.<id>.s2c with its own
//     Options (Perm, QueueDepth, QueueMsgSize), posts a 64-byte request, and
//     waits for the listener's acknowledgement on .s2c. The listener opens
//     the queues and the liveness file and unlinks all three names. Nothing
//     there waits for the client; the connections answered wait in a
//     transport.Backlog for Accept, at most Options.MaxPendingSetups, and
//     beyond a client is answered "busy" (ErrListenerBusy).
//   - Each side holds an OFD write lock on its own byte of the liveness
//     file (client byte 0, listener byte 1). The kernel drops the lock when
//     the holder closes the connection or dies, by any signal: a Send or
//     Recv that waits tests the peer's byte with F_OFD_GETLK at least
//     every 100 ms (every 5 ms while it waits in the kernel, see below),
//     and returns io.EOF once the peer is gone (after the messages already
//     queued). No process id is involved.
//   - A queue message is one frame (internal/frame): a message larger than
//     the queue's message size minus the 8-byte header is split into
//     frames with the "more" flag and reassembled, so any message up to
//     Options.MaxMessageSize passes. Every frame of a message carries the
//     message's priority; the receiver reassembles per priority (see
//     SendPriority).
//
// The queues of a connection are descriptors in blocking mode. A Send or
// Recv that has to wait does so inside mq_timedsend or mq_timedreceive, as
// a C program would, where the kernel hands messages straight to a waiting
// receiver and moves a waiting sender's message into the room a receiver
// makes; before that it lets the goroutines that are ready run. Such a
// wait holds its thread and lasts 5 ms at most (a slice): Close, the end
// of its context or a SetDeadline made meanwhile take effect at the end of
// the slice; deadlines known when the wait starts end it on time. A wait
// longer than a slice or two continues in the Go runtime's poller, holding
// no thread, where Close, contexts and deadlines interrupt it at once.
// While a call waits in the kernel, its thread keeps the processor
// (GOMAXPROCS) until the runtime takes it back, from 20 µs to 10 ms later:
// with GOMAXPROCS 1, other goroutines may wait that long to run.
//
// Only a busy queue's wait begins in the kernel: one on which a wait ended
// less than 10 ms ago, while fewer than max(4, CPUs) calls of the process
// wait in their threads (internal/kwait). Any other wait begins in the
// poller, so that many goroutines waiting on idle queues hold no threads;
// it then pays the poller's set-up (tens of microseconds) and misses the
// kernel's direct hand-off for that one message.
//
// The listener's control queue is non-blocking and waited on in the
// poller only.
package posixmq
