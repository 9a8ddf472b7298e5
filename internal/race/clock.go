package race

import "golang.org/x/sys/unix"

// monoNow reads CLOCK_MONOTONIC in nanoseconds. Unlike the monotonic reading
// of time.Now, which counts from the start of the process, it is comparable
// across processes: the supervisor's kill timestamp and a worker's recovery
// time are subtracted from each other.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("race: clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}
