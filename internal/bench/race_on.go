//go:build race

package bench

// raceEnabled reports a build with the race detector, whose processes
// sleep a second before they exit unless told otherwise.
const raceEnabled = true
