// Package bench runs `ipc bench`: it measures the message transports of
// package ipc between two real processes, next to raw baselines that move
// the same bytes over the same kind of file descriptor without framing
// (plain blocking read/write loops), so that the cost of the framing and of
// the library can be read off as a ratio.
//
// For each transport and message size, Run starts a fresh peer process (its
// own binary re-executed with the hidden PeerCommand) and measures:
//
//   - the round-trip latency: the parent sends a message, the peer echoes
//     it; every round trip after a warm-up is recorded in an HDR histogram,
//     for the given duration or MaxRoundTrips round trips, whichever ends
//     first;
//   - the one-way throughput: the peer sends as fast as it can and the
//     parent, the receiver, counts the messages that arrive during the
//     duration after a warm-up, timing them with its own clock.
//
// Every process pair is bounded in time: a pair that overruns is killed,
// and so is every peer when the context ends. Sockets, FIFOs and queues live
// in a temporary directory or under names unique to the run, and are
// removed when Run returns, whatever the outcome.
//
// The baselines ("raw-pipe", "raw-unix", "raw-unixpacket", "raw-tcp",
// "raw-fifo", "raw-posixmq", "raw-shmspin") need Linux; elsewhere they are
// reported as skipped.
package bench
