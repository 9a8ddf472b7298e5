package dsync

import (
	"fmt"
	"time"
)

// Config configures a Client. A nil *Config means DefaultConfig().
type Config struct {
	// Namespace selects the key-value bucket ("dsync_" + Namespace); the
	// primitives of different namespaces never meet. Letters, digits, '-'
	// and '_'. Default "default".
	Namespace string
	// TTL is the lease time to live: a holder that stops renewing loses its
	// lease on the server TTL after its last renewal. Whole seconds (the
	// server's TTL resolution), at least 1 s. Default 10 s.
	TTL time.Duration
	// Margin is how much earlier than the server's expiry the holder gives
	// its lease up locally; it absorbs the difference between the holder's
	// and the servers' clock rates over one TTL and the servers' clock
	// offsets. Default TTL/10, at least 50 ms; below TTL/2.
	Margin time.Duration
	// Renew is the keep-alive interval. Default TTL/3.
	Renew time.Duration
	// Replicas is the bucket's replica count when Open creates it (1, or 3
	// on a cluster). Default 1.
	Replicas int
	// RequestTimeout bounds each request to the server that is not bounded
	// by the caller's context (keep-alives, releases). Default 2 s.
	RequestTimeout time.Duration
	// ID names this Client in the records it writes (shown by `ipc dsync
	// ls`). Default "host/pid/random".
	ID string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Namespace: "default", TTL: 10 * time.Second, Replicas: 1, RequestTimeout: 2 * time.Second}
}

// withDefaults fills zero fields and validates the result.
func (c *Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c != nil {
		if c.Namespace != "" {
			d.Namespace = c.Namespace
		}
		if c.TTL != 0 {
			d.TTL = c.TTL
		}
		d.Margin, d.Renew, d.ID = c.Margin, c.Renew, c.ID
		if c.Replicas != 0 {
			d.Replicas = c.Replicas
		}
		if c.RequestTimeout != 0 {
			d.RequestTimeout = c.RequestTimeout
		}
	}
	if !namespaceRE.MatchString(d.Namespace) || len(d.Namespace) > 64 {
		return d, fmt.Errorf("%w: namespace %q", ErrBadName, d.Namespace)
	}
	if d.TTL < time.Second || d.TTL%time.Second != 0 || d.TTL > 24*time.Hour {
		return d, fmt.Errorf("%w: TTL %v (whole seconds, 1 s to 24 h)", ErrBadConfig, d.TTL)
	}
	if d.Margin == 0 {
		d.Margin = max(d.TTL/10, 50*time.Millisecond)
	}
	if d.Margin < 0 || d.Margin >= d.TTL/2 {
		return d, fmt.Errorf("%w: Margin %v (0 < Margin < TTL/2)", ErrBadConfig, d.Margin)
	}
	if d.Renew == 0 {
		d.Renew = d.TTL / 3
	}
	if d.Renew <= 0 || d.Renew > d.TTL-d.Margin {
		return d, fmt.Errorf("%w: Renew %v (0 < Renew <= TTL-Margin)", ErrBadConfig, d.Renew)
	}
	if d.Replicas < 1 || d.Replicas > 5 {
		return d, fmt.Errorf("%w: Replicas %d (1 to 5)", ErrBadConfig, d.Replicas)
	}
	if d.RequestTimeout < 0 {
		return d, fmt.Errorf("%w: RequestTimeout %v", ErrBadConfig, d.RequestTimeout)
	}
	if len(d.ID) > 256 {
		return d, fmt.Errorf("%w: ID longer than 256 bytes", ErrBadConfig)
	}
	return d, nil
}
