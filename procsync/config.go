package procsync

import (
	"fmt"
	"time"
)

// Config tunes how a primitive waits. A nil *Config means DefaultConfig().
// It is a property of the handle, not of the shared object: processes may
// use different values on the same primitive.
type Config struct {
	// Spin is how many times a blocking call re-checks the shared word
	// before it sleeps in the kernel. Spinning pays off only while the other
	// process is running on another CPU; keep it short. 100 by default.
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
	if c == nil {
		return DefaultConfig(), nil
	}
	if c.Spin < 0 || c.Poll < 100*time.Microsecond {
		return nil, fmt.Errorf("%w: Spin %d must be >= 0 and Poll %v >= 100µs", ErrBadConfig, c.Spin, c.Poll)
	}
	return c, nil
}
