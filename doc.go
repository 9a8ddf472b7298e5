// Package ipc connects processes on one machine: message connections over
// Unix sockets, TCP, FIFOs, POSIX message queues, anonymous pipes and
// shared-memory rings, all behind one interface, Conn. (Its sibling
// packages shm and procsync give shared-memory segments and locks that
// survive the death of a holder.)
//
// # Addresses
//
// Listen and Dial take an address whose scheme names the transport:
//
//	unix:///run/app.sock        Unix stream socket
//	unixpacket:///run/app.sock  Unix SOCK_SEQPACKET socket
//	tcp://127.0.0.1:7000        TCP; TLS when Config.TLS is set
//	fifo:///run/app.fifo        named pipes: a control FIFO at the path, two per connection beside it
//	posixmq:///app              POSIX message queues: a control queue, two per connection
//	shm:///run/app.sock         shared-memory rings, set up through a Unix socket at the path
//	pipe:                       a parent and the child it starts (StartChild, ChildConn)
//
// ParseAddr checks an address without using it. Paths are absolute; a
// POSIX queue name is one component. Files that Listen creates get
// Config.Perm (0600 by default) and are removed by Listener.Close; a file
// left at the address by a dead listener is replaced, a live listener is
// never disturbed (ErrAddrInUse). Transports a system lacks are not
// registered there: Listen and Dial return ErrUnsupported.
//
// # Connections
//
// A Conn carries messages, whatever the transport:
//
//   - Boundaries: every Send arrives as exactly one Recv, byte for byte and
//     in order; an empty message is a message.
//   - Size: Config.MaxMessageSize bounds a message (64 MiB by default, at
//     most 1 GiB); both ends should agree. A larger Send fails with
//     ErrMessageTooLarge and sends nothing; a Recv that meets a larger
//     message returns ErrMessageTooLarge. Transports whose units are
//     smaller (a SOCK_SEQPACKET packet, a queue message, a ring) carry a
//     large message in several pieces and reassemble it.
//   - Deadlines and contexts: Send and Recv end when their context ends
//     (with the context's error) or when the deadline set with SetDeadline
//     passes (with ErrTimeout, which is os.ErrDeadlineExceeded and a
//     net.Error whose Timeout is true). SetDeadline applies to calls
//     already blocked too. A Recv cut short leaves the Conn usable, also
//     in the middle of a large message: the next Recv resumes it. A Send
//     cut short part-way through a large message never gives the peer a
//     torn message: the message is dropped (shm, posixmq), or completed by
//     the next Send (unix, tcp, fifo, pipe), or later Sends fail: with
//     ErrCorruptFrame on unixpacket, with the timeout on TLS (crypto/tls
//     cannot resume a write).
//   - Concurrency: one Send and one Recv may run at the same time.
//     Concurrent Sends are serialised, never interleaved, as are concurrent
//     Recvs.
//   - Waiting: a Send or Recv that must wait on a busy connection (one on
//     which a wait ended less than 10 ms ago) holds its thread for a
//     while, which is what makes a hand-off as fast as a C program's
//     (PROTOCOL.md says why): unix, unixpacket, tcp without TLS, fifo and
//     pipe connections wait in ppoll(2) (their descriptors stay out of the
//     Go runtime's poller) and posixmq in mq_timedsend/mq_timedreceive,
//     for up to 10 ms, then in the runtime's poller, which holds no
//     thread; shm spins for Config.Spin, then sleeps in futex(2) for up
//     to 10 ms, then on a hub: one goroutine that sleeps in
//     futex_waitv(2) for up to 127 waiters. On an idle connection the wait
//     goes to the poller (shm: the hub) at once, and at most max(4, CPUs)
//     calls of a process hold their threads waiting at the same time, so
//     goroutines blocked on thousands of connections hold about as many
//     threads as on as many net.Conn (README has the figures). The first
//     message after a pause pays for it: tens of microseconds for the
//     poller's set-up.
//   - The end: after Close every call returns net.ErrClosed, and calls
//     blocked in Send or Recv return. When the peer closes its end or its
//     process dies (kill -9 included), Recv returns the messages already
//     sent and then io.EOF, and Send returns io.EOF (or succeeds into a
//     buffer no one will read); nothing waits forever.
//   - Errors: every error is an *OpError naming the operation and the
//     address; compare with errors.Is against the sentinel errors (and
//     io.EOF, net.ErrClosed, the context's errors). Bytes that are not a
//     valid frame give ErrCorruptFrame, never a panic or a hang; the Conn
//     is unusable afterwards.
//
// Some transports have more; reach it through a Conn with PeerCredentials,
// SendFiles and RecvFiles (unix, unixpacket), SendPriority and
// RecvPriority (posixmq), and ZeroCopy (shm).
//
// # Listeners and byte streams
//
// A Listener's AcceptConn returns message connections. The Listener also
// satisfies net.Listener: its Accept returns each connection's byte-stream
// view, a net.Conn made by NewStream, so that net/http, gRPC and other
// code written for net.Conn run over any transport. DialStream is the
// dialling side:
//
//	l, _ := ipc.Listen("shm:///run/app.sock", nil)
//	go http.Serve(l, handler)
//
//	client := &http.Client{Transport: &http.Transport{
//		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
//			return ipc.DialStream(ctx, "shm:///run/app.sock", nil)
//		},
//	}}
//
// The view's Write sends its bytes as messages of at most 64 KiB; Read
// returns the bytes of the messages received without their boundaries. Read
// and write deadlines are independent and interrupt calls already blocked,
// as net.Conn requires.
//
// # Connection set-up
//
// The shm, fifo and posixmq listeners set each connection up themselves,
// in the background: Accept returns only connections set up, and no client
// can hold up another. Two Config fields bound that work:
//
//   - SetupTimeout (5 s by default): each set-up runs under a deadline of
//     its own; a client that connects and says nothing, or stops half-way
//     through the hand-shake, is dropped at it and its descriptors, files,
//     queues or segment released. (Only the shm hand-shake waits for the
//     client; fifo and posixmq answer a request without waiting.)
//   - MaxPendingSetups (64 by default): the connections a listener holds
//     that Accept has not taken, being set up or ready. Beyond it a new
//     client is refused at once: its Dial fails with ErrListenerBusy.
//
// Listener.SetupStats counts the set-ups pending and ready, and those
// refused, timed out and failed. unix and unixpacket listeners check
// credentials (AllowUIDs) in Accept, a check that needs nothing from the
// client; a client that connects and says nothing is an accepted
// connection there, as with tcp.
package ipc
