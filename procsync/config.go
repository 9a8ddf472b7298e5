package procsync

import (
	"fmt"
	"time"
)

// Config tunes how a primitive waits. A nil *Config means DefaultConfig(),
// and a zero field takes its default.
// It is a property of the handle, not of the shared object: processes may
// use different values on the same primitive.
type Config struct {
	// Spin is how many times a blocking call re-checks the shared word
	// before it sleeps in the kernel. Spinning pays off only while the other
	// process is running on another CPU; keep it short. 100 by default; a
	// negative value means no spinning.
	Spin int
	// Poll bounds every sleep in the kernel. After a sleep that reaches it
	// the waiter checks whether the holder is still alive, so Poll is the
	// worst-case time to notice a dead holder or a lost wake-up. 10 ms by
	// default; at least 100 µs.
	Poll time.Duration
}

// DefaultConfig returns the defaults: Spin 100, Poll 10 ms.
func DefaultConfig() *Config { return &Config{Spin: 100, Poll: 10 * time.Millisecond} }

func (c *Config) validate() (*Config, error) {
	d := DefaultConfig()
	if c == nil {
		return d, nil
	}
	v := *c
	if v.Spin == 0 {
		v.Spin = d.Spin
	} else if v.Spin < 0 {
		v.Spin = 0
	}
	if v.Poll == 0 {
		v.Poll = d.Poll
	}
	if v.Poll < 100*time.Microsecond {
		return nil, fmt.Errorf("%w: Poll %v below 100µs", ErrBadConfig, v.Poll)
	}
	return &v, nil
}
