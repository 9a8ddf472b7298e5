package shm

// Limits of Validate that the external tests check decoded headers against.
const (
	MaxObjectsForTest = maxObjects
	MaxSizeForTest    = maxSize
)
