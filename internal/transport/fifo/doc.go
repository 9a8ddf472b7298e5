// Package fifo is the transport of fifo:///path addresses: message
// connections over named pipes (FIFOs), Linux only.
//
// A FIFO carries bytes one way, so a connection uses two, one per
// direction. The listener owns one more, the control FIFO at the path
// itself, where clients write fixed-size connection requests. The protocol
// (PROTOCOL.md, "FIFO transport") in short:
//
//   - Listen creates the control FIFO at path with Options.Perm (exactly,
//     whatever the umask) and keeps it open for reading and writing, so
//     that a client can tell a live listener (the FIFO has a reader) from
//     a stale FIFO left by a dead one (no reader: open for writing fails
//     with ENXIO). A stale FIFO is replaced; a live one gives ErrAddrInUse.
//   - Dial creates the connection's pair path.<id>.c2s and path.<id>.s2c
//     (id: 16 random bytes in hex) with its own Options.Perm, opens its
//     ends, and writes a 64-byte request naming id to the control FIFO.
//     64 bytes is less than PIPE_BUF (4096), so concurrent requests of
//     several clients never interleave.
//   - The listener opens its ends of the pair, answers with an 8-byte
//     acknowledgement on path.<id>.s2c and unlinks both names. From then
//     on every FIFO of the connection has exactly one writer and one
//     reader, which no other process can open (the names are gone), so
//     frames never interleave whatever their size: a message is one frame
//     (internal/frame) of any length up to Options.MaxMessageSize.
//   - Nothing in the listener's answer waits for the client (the answer is
//     one non-blocking write into a FIFO that is new), and the reader of the
//     control FIFO finds requests among any other bytes written there, so
//     that no client can hold up another. The connections answered wait in
//     a transport.Backlog for Accept, at most Options.MaxPendingSetups;
//     beyond, a client is answered "busy" (ErrListenerBusy).
//
// A peer that dies closes its ends: the other side's Recv returns io.EOF
// and its Send fails with EPIPE, reported as io.EOF. Listener.Close
// removes the control FIFO and any connection FIFOs a client left behind.
// Dial needs write permission on the directory of path (it creates the
// pair there), and the listener must be able to open the pair: when the
// two run as different users, give Dial a Perm that lets the listener in.
package fifo
