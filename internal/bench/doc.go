// Package bench runs `ipc bench`: it measures the message transports of
// package ipc between two real processes, next to raw baselines that move
// the same bytes over the same kind of file descriptor without framing
// (plain blocking read/write loops), so that the cost of the framing and of
// the library can be read off as a ratio.
//
// For each transport and message size, Run starts a fresh pair of
// processes, its own binary re-executed with the hidden PeerCommand: a
// driver, the measuring end, which starts its peer. (A process that has
// run one measurement skews the next: runtime threads and the runtime
// monitor's pace are left as the last transport made them. Options.
// InProcess measures from the calling process instead, for tests.) With
// Options.CPUs the driver and its peer are pinned to two CPUs, keeping the
// GOMAXPROCS they would have unpinned. The driver measures:
//
//   - the round-trip latency: the driver sends a message, the peer echoes
//     it; every round trip after a warm-up is recorded in an HDR histogram,
//     for the given duration or MaxRoundTrips round trips, whichever ends
//     first;
//   - the one-way throughput: the peer sends as fast as it can and the
//     driver, the receiver, counts the messages that arrive during the
//     duration after a warm-up, timing them with its own clock.
//
// The driver prints its Result as JSON on stdout and its progress on
// stderr; SIGINT stops it cleanly (peer stopped, files removed).
//
// Every process pair is bounded in time: a pair that overruns is killed,
// and every driver is told to stop when the context ends. Sockets, FIFOs and queues live
// in a temporary directory or under names unique to the run, and are
// removed when Run returns, whatever the outcome.
//
// The baselines ("raw-pipe", "raw-unix", "raw-unixpacket", "raw-tcp",
// "raw-fifo", "raw-posixmq", "raw-shmspin") need Linux; elsewhere they are
// reported as skipped. Their descriptors are blocking and never registered
// with the runtime's poller (epoll): on a registered pipe every write pays
// the poller's wake-up callback, a third of the 64 B message rate on the
// machine this was measured on.
//
// RunRPC runs `ipc bench rpc`: package rpc's unary calls and server
// streams (grpc.testing.TestService, protobuf payloads) over shm and unix,
// next to grpc-go over a Unix socket and over ipc shm byte streams, net/rpc
// over a Unix socket and the raw ipc.Conn round trip, in the same run. For
// each system and payload size a driver (the client, with 1, 8 and 64
// concurrent callers on one connection) starts its server process, pinned
// as the transport measurements are; the server stops when its stdin ends.
package bench
