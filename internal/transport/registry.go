package transport

import (
	"context"
	"sync"
)

// Driver is one transport: how to listen at and dial a target, the part of
// an address after "scheme://" (a path, a queue name, or host:port).
type Driver struct {
	Listen func(target string, o *Options) (Listener, error)
	Dial   func(ctx context.Context, target string, o *Options) (Conn, error)
}

var (
	mu      sync.RWMutex
	drivers = map[string]Driver{}
)

// Register makes a transport available under scheme; transport packages
// call it from init.
func Register(scheme string, d Driver) {
	mu.Lock()
	defer mu.Unlock()
	drivers[scheme] = d
}

// Lookup returns the driver of scheme.
func Lookup(scheme string) (Driver, bool) {
	mu.RLock()
	defer mu.RUnlock()
	d, ok := drivers[scheme]
	return d, ok
}
