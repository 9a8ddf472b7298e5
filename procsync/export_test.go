package procsync

// SetTestHook makes every slow-path step call f (see hook.go). Peers set it
// once, before they use any primitive.
func SetTestHook(f func(step string)) { testHook = f }

// Words returns the object's first n 32-bit words, for tests that check
// what a dead waiter left behind.
func (b *base) Words(n int) []uint32 {
	w := make([]uint32, n)
	for i := range w {
		w[i] = b.u32(4 * i).Load()
	}
	return w
}

// The steps of hook.go, for the external tests.
const (
	StepLockSleep       = stepLockSleep
	StepRWReserved      = stepRWReserved
	StepRWDrain         = stepRWDrain
	StepRWReaderIn      = stepRWReaderIn
	StepRWReaderSleep   = stepRWReaderSleep
	StepRWClearing      = stepRWClearing
	StepSemSleep        = stepSemSleep
	StepOwnedSleep      = stepOwnedSleep
	StepEventSleep      = stepEventSleep
	StepCondAnnounced   = stepCondAnnounced
	StepCondSleep       = stepCondSleep
	StepCondTaken       = stepCondTaken
	StepBarrierIn       = stepBarrierIn
	StepBarrierSleep    = stepBarrierSleep
	StepBarrierReleased = stepBarrierReleased
)
