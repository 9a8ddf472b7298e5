// Package sock implements the socket transports of package ipc: unix
// (Unix stream sockets), unixpacket (Unix SOCK_SEQPACKET sockets) and tcp
// (TCP, optionally inside TLS). It registers them with package transport on
// Linux.
//
// # Unix socket files
//
// Listen creates the socket file with Options.Perm (0600 by default),
// whatever the umask: the mode is set between bind and listen, before any
// peer can connect. A file already at the path is handled so:
//
//   - a socket no one listens on (connect is refused: its listener died) is
//     removed and replaced;
//   - a socket someone listens on is kept and Listen fails with
//     ErrAddrInUse; the probe is a connection that the live listener sees
//     open and close at once;
//   - any other file is kept and Listen fails with an error that wraps
//     fs.ErrExist.
//
// The check and the replacement run under an flock of the directory, so
// processes using this package never race each other for a stale file.
// Close removes the socket file, only if it is still the one Listen created
// (same device, inode and change time).
//
// # Peers
//
// Every Unix connection records its peer's credentials (SO_PEERCRED) when
// it is made: PeerCred on UnixConn and PacketConn. With Options.AllowUIDs
// set, Dial fails with ErrPeerNotAllowed if the listening process runs as
// another uid, and Accept closes connections from other uids and goes on
// waiting: such peers are never handed out, nothing is logged (the
// listener's SetupStats counts them as Failed), and the peer sees its
// connection closed (io.EOF). The check needs nothing from the peer, so it
// runs in Accept and no client can make it wait: a client that connects
// and sends nothing is an accepted connection like any other.
//
// # Descriptor passing
//
// SendFiles sends a message with up to MaxFiles (253) descriptors attached
// (SCM_RIGHTS); RecvFiles returns the message and the peer's descriptors as
// *os.File, close-on-exec. On a stream the descriptors ride on the write
// that starts the message's frame, so they stay tied to their message. Recv
// closes the descriptors of the message it returns; Close closes those
// received and not handed out. On a Unix stream, the rest of a frame
// that a Send or SendFiles began before its context or deadline cut it
// short is written first by the next Send or SendFiles, so frames never
// interleave.
//
// # TCP
//
// tcp://host:port listens on one address, tcp://:port on every interface.
// TCP_NODELAY is set on both ends. With Options.TLS the connection runs
// crypto/tls: Dial's handshake ends with Dial's context (a ServerName is
// taken from the address if the config has none). An accepted connection
// handshakes in the background from the moment Accept returns it, for at
// most HandshakeTimeout, so that a slow client holds up neither Accept nor
// other connections; Send and Recv wait for the handshake within their own
// context and deadline (giving up waiting leaves the handshake running and
// the connection usable) and return its error if it failed. A deadline set
// meanwhile applies to the connection once the handshake is done.
//
// crypto/tls cannot resume a write that a deadline or context cut short (it
// keeps the write's error for every later write, and the peer may hold part
// of a record). A TLS Send whose context has ended or whose deadline has
// passed before it starts therefore writes nothing and returns at once,
// leaving the connection usable; but once a Send interrupted while writing
// has returned the context's error or ErrTimeout, every later Send fails at
// once with ErrCorruptFrame, saying so and quoting the original timeout, and
// the peer never gets the interrupted message (it sees the end of the
// connection after Close). Plain TCP and Unix streams instead keep the rest
// of the frame and write it first on the next Send. Recv has no such limit:
// an interrupted Recv keeps what it read and the next one continues.
//
// Close sends a TLS peer a close_notify alert first (except after an
// interrupted write); failing to send it to a peer that is gone (broken
// pipe, reset) is not an error of Close.
//
// # Limits
//
// unix and tcp carry a message as one frame on the stream: the only bound is
// Options.MaxMessageSize.
//
// unixpacket carries one frame per packet, and a message larger than a
// packet as several frames with the "more" flag, which Recv puts together,
// enforcing MaxMessageSize on the sum. The kernel refuses a packet larger
// than SO_SNDBUF-32 bytes (EMSGSIZE) or larger than the biggest buffer it
// allocates for one (ENOBUFS): 4 MiB + 68 KiB less a few hundred bytes on
// x86-64 with 4 KiB pages (4,263,616 bytes measured on Linux 6.18), or less
// when memory is too fragmented for such an allocation. A packet
// connection therefore raises SO_SNDBUF to 4 MiB, within net.core.wmem_max
// (the kernel doubles the value), starts with packets of SO_SNDBUF-32 bytes,
// header included, and halves them for the rest of the connection each time
// the kernel refuses one (down to 4 KiB), sending the refused packet again.
// With wmem_max at 4 MiB, SO_SNDBUF is 8 MiB and packets settle at 4 MiB -
// 20 bytes of payload after one refusal; with the common default wmem_max of
// 208 KiB, SO_SNDBUF is 416 KiB and a packet carries 425,944 bytes. Packets
// of 256 KiB and more move a 16 MiB message at the same speed (4-6 GB/s
// between two goroutines on a 2-vCPU VM), 64 KiB packets at about 3 GB/s.
//
// The receiver learns each packet's length before reading it
// (MSG_PEEK|MSG_TRUNC), so it never truncates one and reads the payload in
// place: one extra system call per packet. A packet whose length disagrees
// with its header gives ErrCorruptFrame, and so does every later Recv. A
// deadline or context that ends between the packets of a message keeps the
// part received, and the next Recv continues it. A Send cut between packets
// leaves the connection unusable for sending (ErrCorruptFrame). An empty
// packet, which this package never sends, reads as the end of the
// connection.
package sock
