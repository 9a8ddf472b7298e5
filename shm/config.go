package shm

import (
	"fmt"
	"os"
)

// Config holds the creation parameters of a segment. A nil *Config means
// DefaultConfig(), and a zero field takes its default.
type Config struct {
	// Perm is the permission of the backing file; 0600 by default.
	Perm os.FileMode
	// Slots is the number of process slots: how many handles (one per Open
	// or Create, usually one per process) can be attached at once. 64 by
	// default, at most MaxSlots.
	Slots int
	// Objects is the capacity of the object directory; 128 by default.
	Objects int
}

// DefaultConfig returns the defaults: mode 0600, 64 slots, 128 objects.
func DefaultConfig() *Config {
	return &Config{Perm: 0o600, Slots: 64, Objects: 128}
}

func (c *Config) validate() (*Config, error) {
	d := DefaultConfig()
	if c == nil {
		return d, nil
	}
	v := *c
	if v.Perm == 0 {
		v.Perm = d.Perm
	}
	if v.Slots == 0 {
		v.Slots = d.Slots
	}
	if v.Objects == 0 {
		v.Objects = d.Objects
	}
	c = &v
	if c.Perm&^os.ModePerm != 0 {
		return nil, fmt.Errorf("%w: Perm %v has bits other than permissions", ErrBadConfig, c.Perm)
	}
	if c.Slots < 1 || c.Slots > MaxSlots {
		return nil, fmt.Errorf("%w: Slots %d not in [1, %d]", ErrBadConfig, c.Slots, MaxSlots)
	}
	if c.Objects < 1 || c.Objects > maxObjects {
		return nil, fmt.Errorf("%w: Objects %d not in [1, %d]", ErrBadConfig, c.Objects, maxObjects)
	}
	return c, nil
}

// ValidateName checks a segment name: 1 to MaxNameLen bytes of
// [A-Za-z0-9._-], not starting with '.', without "..". A valid name always
// names a file directly inside /dev/shm.
func ValidateName(name string) error {
	return checkName(name, MaxNameLen)
}

func checkName(name string, max int) error {
	if name == "" || len(name) > max {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrBadName, name, max)
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: %q starts with '.'", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q holds %q (allowed: letters, digits, '.', '_', '-')", ErrBadName, name, c)
		}
		if c == '.' && i+1 < len(name) && name[i+1] == '.' {
			return fmt.Errorf("%w: %q holds \"..\"", ErrBadName, name)
		}
	}
	return nil
}
