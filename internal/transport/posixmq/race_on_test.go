//go:build linux && race

package posixmq

const raceEnabled = true
