package procsync

// Steps of the slow paths at which a test can park a waiter (the test binary
// sets testHook, see export_test.go) in order to kill it there. Each names
// what the waiter has published at that point. Outside tests testHook is
// nil and hook costs one load and a compare.
const (
	stepLockSleep       = "lock-sleep"       // Mutex or RWMutex writer: waitBit set, about to sleep
	stepRWReserved      = "rw-reserved"      // RWMutex writer: reservation published, writer word not yet taken
	stepRWDrain         = "rw-drain"         // RWMutex writer: holds the writer word, readers inside, about to sleep
	stepRWReaderIn      = "rw-reader-in"     // RWMutex reader: counted in its slot, writer word not yet re-checked
	stepRWReaderSleep   = "rw-reader-sleep"  // RWMutex reader: waiter bit set on rseq, about to sleep
	stepRWClearing      = "rw-clearing"      // RWMutex reader: took a dead writer's word over to clear it
	stepSemSleep        = "sem-sleep"        // Semaphore: waiter bit set, about to sleep
	stepOwnedSleep      = "owned-sleep"      // OwnedSemaphore: waiter bit set on seq, about to sleep
	stepEventSleep      = "event-sleep"      // Event: waiter bit set, about to sleep
	stepCondAnnounced   = "cond-announced"   // Cond: counted and waiter bit set, mutex still held
	stepCondSleep       = "cond-sleep"       // Cond: mutex released, about to sleep
	stepCondTaken       = "cond-taken"       // Cond: took a wake-up, mutex not yet relocked
	stepBarrierIn       = "barrier-in"       // Barrier: counted inside the round, not yet arrived
	stepBarrierSleep    = "barrier-sleep"    // Barrier: arrived, about to sleep
	stepBarrierReleased = "barrier-released" // Barrier: the round tripped, not yet left
)

// testHook, when set (tests only), is called at each step above.
var testHook func(step string)

func hook(step string) {
	if testHook != nil {
		testHook(step)
	}
}
