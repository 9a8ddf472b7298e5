// Package dsync coordinates processes across machines through a NATS
// server or cluster (JetStream key-value): leases, locks (Mutex),
// semaphores (Semaphore) and leader election (Election), each acquisition
// carrying a fencing token, and a Fence that lets a resource refuse the
// writes of a holder whose lease has ended.
//
// Use it where package procsync cannot reach: processes on several
// machines, or processes that must survive the loss of a machine. On one
// machine procsync is about a thousand times faster.
//
//	c, err := dsync.Open(ctx, "nats://host:4222", nil)
//	mu, err := c.Mutex("orders")
//	lease, err := mu.Lock(ctx)              // waits, watching the key
//	err = store.Write(lease.Context(), lease.Token(), data) // the store keeps a Fence
//	err = mu.Unlock(ctx)
//
// # How it works
//
// A Client uses one bucket per namespace ("dsync_" + Namespace), with
// history 1 and per-key TTLs (the server's LimitMarkerTTL). A lock is the
// key "mutex.NAME": Lock creates it (a publish that expects no live value
// on the key) with a TTL, and the revision of that create is the fencing
// token. Revisions are sequence numbers of the bucket's stream, so tokens
// strictly increase across holders, deletions and expiries. While the lease
// is held a renewer rewrites the key every Renew (TTL/3), conditional on
// the revision it last wrote and with a fresh TTL; the token stays the
// acquiring revision. Unlock deletes the key conditionally on that
// revision. If the holder stops renewing (killed, paused, cut off), the
// server deletes the key TTL after the last renewal it stored and leaves a
// marker that waiters see. Semaphore permits are the keys "sem.NAME.0" to
// "sem.NAME.(n-1)"; election candidates are "elect.NAME.ID", the leader
// being the candidate with the lowest token. PROTOCOL.md ("dsync") gives
// the key layout and the value format.
//
// # Waiting and fairness
//
// A waiter watches the keys it wants (no polling) and retries its create on
// every deletion or expiry marker, and at the latest once a TTL in case a
// watch missed updates across a reconnection. A watch whose set-up request
// goes unanswered for RequestTimeout (a cluster between stream leaders) is
// tried again, and a watch that ends (the client library could not recreate
// the consumer behind it) is replaced, so that a waiter neither hangs on a
// request nor retries in a busy loop. The create that follows a marker the
// Client has seen (its own release, or a deletion its watch delivered)
// names that marker's revision and takes one round trip.
//
// Mutex and Semaphore are not FIFO: on a release all waiters race and the
// first create to reach the stream's leader wins (a waiter can be
// overtaken any number of times under sustained contention, and the
// releasing Client, which knows the marker its own release left, tends to
// win when it asks again at once). Semaphore waiters try the permits from
// a random one on. Election is FIFO: candidates lead in the order their
// candidacies were created (the stream orders the creates), whatever the
// order in which their watches hear of a resignation.
//
// # What is guaranteed
//
//   - At most one holder per lock (n per semaphore) believes its lease
//     valid at any moment, given the clock assumption below: the holder's
//     local deadline is the send time of its last acknowledged renewal plus
//     TTL minus Margin, and the server can expire the key only TTL after it
//     stored that renewal, which is later than the send. Err and Valid
//     check the deadline itself, so a process that was paused sees its
//     lease gone as soon as it runs again; Done and Context end when the
//     lease's timer fires at the deadline (a few milliseconds after it,
//     more on a loaded machine: Margin must cover that delay too). Cut
//     off from its server, a holder's lease ends before anyone else can
//     acquire: on a three-node cluster with TTL 1 s and Margin 200 ms the
//     lease ended 0.78–0.80 s after its server stopped and the next
//     holder acquired 1.0–1.3 s after it (TestFaults).
//   - Lock and TryLock do not return a lease already past its deadline: an
//     acquisition acknowledged too late (the caller paused, or a server
//     slow to answer, for longer than TTL minus Margin) is given back, and
//     Lock tries again while TryLock returns ErrLeaseExpired.
//   - Fencing tokens strictly increase from one acquisition of a primitive
//     to the next. A resource that checks them with a Fence refuses the
//     writes of any holder older than the newest it has seen, even of a
//     holder that was paused past its deadline and does not know it yet:
//     that, not the lease alone, is what makes a lock safe for writes.
//   - No waiter waits forever for a holder that is gone: the key expires TTL
//     after the last renewal the server stored, up to about a second later
//     (the server's TTL resolution): after a kill -9 of a holder right
//     after it acquired, the next holder acquired 1.0–1.3 s later with TTL
//     1 s (TestFaults).
//   - Semaphore: at most n leases on permits of one semaphore are valid at
//     once (each permit is a mutex of its own), provided every user gives
//     the same n; the first Acquire of a Semaphore value and every waiter
//     check the size recorded in the permits they see (ErrMismatch).
//   - Election: the leader is the live candidacy with the lowest token;
//     since a new candidacy always gets a larger token than every live one,
//     each leader's term (Lease.Token) is larger than every earlier
//     leader's, and Campaign returns only when every older candidacy has
//     ended. Leadership is a lease: it ends (Done) as a lock's does, and a
//     Fence on the terms makes it safe for writes. Observe reports the
//     leaders in the order of their terms, each once; a leader whose term
//     begins and ends between two events the watch delivers is still
//     reported, because every candidacy's creation and end reach the
//     watch in stream order.
//
// TestFaults checks the Mutex guarantees on a three-node cluster (bucket with three
// replicas) with the holders in separate processes that are killed -9,
// frozen past their TTL with SIGSTOP and cut off by stopping their server
// (the stream's leader or a follower), over 500 hand-offs (5000 in the
// long run): no write accepted with a stale token, no two leases believed
// valid at once, every frozen holder's late write refused by the fence,
// every waiter served, and the history of acquisitions and releases
// linearizable as a lock with increasing tokens (porcupine).
//
// Clock assumption: the holder's clock and the servers' clocks run at the
// same rate within Margin per TTL (Margin is TTL/10 by default, so a 10 %
// rate error, far beyond real clocks), and in a cluster the servers' wall
// clocks agree within Margin (a new stream leader expires keys by its own
// clock). No client's wall clock is ever compared with another's; the
// holder measures its deadline on its monotonic clock.
//
// What is not guaranteed: a partition that cuts the holder off from the
// servers ends its lease at its local deadline, and a majority on the other
// side may then grant the lock to someone else — the cut-off holder learns
// it locally, in time, but any write it began earlier and that is still
// in flight can only be stopped by a Fence. A minority partition of the
// cluster makes creates and renewals fail (they need a quorum): holders on
// it lose their leases at their deadlines. Server TTLs have a resolution
// of one second, so TTL is whole seconds; a key expires up to about a
// second after its TTL. Mutex and Semaphore waiters are not served in order (see above).
//
// Inspect (and `ipc dsync ls`) lists what is held, from any process, without
// taking or creating anything.
//
// # Concurrency
//
// A Client, and the Mutex, Semaphore, Election and Lease values it hands
// out, are safe for concurrent use. Every blocking call takes a context.
// Close ends every lease the Client holds and deletes their keys.
package dsync
