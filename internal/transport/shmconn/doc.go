// Package shmconn is the shared-memory transport behind "shm:///path"
// addresses: messages travel through two single-producer single-consumer
// rings (shm.Ring), one per direction, in a segment private to the
// connection; a Unix socket at path is used only to set the connection up
// and, afterwards, as the liveness signal.
//
// # Set-up
//
// Listen creates a Unix socket at path exactly as the unix:// transport
// does, through it (mode Options.Perm, 0600 by default; a socket file left
// by a dead process is replaced; a live listener is never disturbed,
// ErrAddrInUse). Dial connects and sends a 32-byte hello; the listener checks the client's credentials
// (SO_PEERCRED, Options.AllowUIDs) and protocol version, creates an
// anonymous segment (a memfd: it has no name, so nothing is left behind to
// clean up) holding the two rings of Options.RingSize bytes each, and sends
// its own hello with the memfd attached (SCM_RIGHTS). The client maps the
// segment (shm.OpenFile). A refused client gets ErrPeerNotAllowed, a client
// or server speaking another version ErrVersion.
//
// The listener accepts the clients' sockets in a goroutine of its own and
// runs each set-up in another (transport.Backlog), under a deadline of its
// own, Options.SetupTimeout: a client that connects and says nothing, or
// half a hello, is dropped at its deadline and holds up no other client.
// Accept returns the connections set up, never a failed one. At most
// Options.MaxPendingSetups connections are held being set up or waiting
// for Accept; beyond, a new client is answered at once with the status
// "busy" (ErrListenerBusy) and its socket closed, so that a flood cannot
// make the listener hold more descriptors or memory than that.
//
// # Liveness
//
// The socket stays open for the life of the connection and carries nothing
// more. Each side keeps one goroutine blocked reading it: when the peer
// closes or dies (kill -9 included) the kernel closes the peer's end, the
// read ends, and the goroutine marks the peer dead and wakes this side's
// sleeping Send and Recv. Recv then returns the messages already in the
// ring and io.EOF; Send returns io.EOF. Close also marks both rings closed
// in shared memory, so the peer sees the end even before its socket does.
// The segment's memory is freed by the kernel once both processes have
// closed or lost their descriptors and mappings.
//
// # Messages
//
// A message that fits one record (at most a quarter of the ring, less 8
// bytes, MaxReserve) is one record; a larger one streams through the ring
// as a sequence of records, the first carrying the total length, each but
// the last flagged "more", so that messages of any size up to
// MaxMessageSize pass through a small ring. A Send cut short (by its
// context or deadline) after part of a large message was written is
// retracted: the next Send first writes an "abort" record, on which the
// receiver discards the partial message. A Recv cut short in the middle of
// a large message keeps what it has and resumes on the next call.
//
// # Waiting
//
// A blocked call spins for Options.Spin (re-checking the ring, reading the
// clock only every 128 turns and yielding the processor to other goroutines
// every 2048), then sets the ring's waiting flag and sleeps on it. The
// other side makes the wake-up system call only when the flag is set, so a
// busy connection makes no system calls at all. A busy ring's waiter (a
// wait on it ended less than 10 ms ago) sleeps in its thread with
// futex(2), for 10 ms at most and while fewer than max(4, CPUs) calls of
// the process wait in their threads; any other joins a hub that sleeps in
// one futex_waitv(2) for up to 127 waiters (one thread for them all) and
// passes the wake-up on through a channel, some microseconds later than a
// sleeper in its own thread would wake. The peer wakes the same word
// either way. The spin is bounded, so two processes spinning on one
// processor (each waiting for the other) cost each other at most Spin
// before both sleep; a waiting receiver watches the header word of the next
// record rather than the sender's index, so that a message arrives with its
// own cache lines. The goroutines are not locked to their threads: on the
// machine this was measured on, LockOSThread made no difference.
//
// # Concurrency
//
// One Send and one Recv may run at the same time. Concurrent Sends are
// serialised by a mutex, as are concurrent Recvs. A zero-copy reservation
// (Reserve) holds the send side until Commit, and a message read in place
// (RecvInPlace) holds the receive side until Release: the same goroutine
// must not call Send between Reserve and Commit, or Recv between
// RecvInPlace and Release.
package shmconn
