package ipc

import (
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/ipcgo/ipc/internal/transport"
)

// Config holds the settings of Dial and Listen. A nil *Config means
// DefaultConfig(). Fields that do not apply to a transport are ignored.
type Config struct {
	// MaxMessageSize is the largest message Send accepts and Recv delivers;
	// 64 MiB by default. Both ends should agree.
	MaxMessageSize int
	// Perm is the permission of the files Listen creates: socket files,
	// FIFOs, POSIX queues, shared-memory segments. 0600 by default.
	Perm os.FileMode
	// AllowUIDs, when not nil, is the list of user ids a Unix-socket or shm
	// peer must run as (checked with SO_PEERCRED): Dial to a listener of
	// another uid fails with ErrPeerNotAllowed, and a listener closes
	// connections from other uids without ever returning them from Accept.
	AllowUIDs []int
	// TLS, for tcp, turns on TLS: a server needs Certificates, a client
	// what it verifies the server with.
	TLS *tls.Config
	// RingSize is the size in bytes of each direction's ring of an shm
	// connection, a power of two, at least 4 KiB. 1 MiB by default.
	RingSize int
	// Spin is how long an shm waiter spins before it sleeps in the kernel;
	// 50 µs by default. 0 means the default; use a negative value to never
	// spin.
	Spin time.Duration
	// QueueDepth and QueueMsgSize are the POSIX queue attributes mq_maxmsg
	// and mq_msgsize (10 and 8192 by default, the kernel's usual limits for
	// unprivileged users).
	QueueDepth   int
	QueueMsgSize int
	// SetupTimeout bounds the set-up of each connection that a listener
	// runs itself (shm, fifo, posixmq): a client that has not done its part
	// of the set-up (an shm client's hello) within it is dropped, its
	// resources released. It also bounds the shm client's wait for the
	// listener's answer. 5 s by default.
	SetupTimeout time.Duration
	// MaxPendingSetups bounds the connections such a listener holds that
	// Accept has not taken yet: those being set up (concurrently, each
	// under its own SetupTimeout, so that a slow or silent client delays
	// no other) and those set up and waiting for Accept. Beyond it the
	// listener refuses a new client at once: its Dial fails with
	// ErrListenerBusy. 64 by default.
	MaxPendingSetups int
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		MaxMessageSize: 64 << 20,
		Perm:           0o600,
		RingSize:       1 << 20,
		Spin:           50 * time.Microsecond,
		QueueDepth:     10,
		QueueMsgSize:   8192,

		SetupTimeout:     transport.DefaultSetupTimeout,
		MaxPendingSetups: transport.DefaultMaxPendingSetups,
	}
}

// validate returns a complete copy of c: zero fields take their defaults.
func (c *Config) validate() (*Config, error) {
	d := DefaultConfig()
	if c == nil {
		return d, nil
	}
	v := *c
	if v.MaxMessageSize == 0 {
		v.MaxMessageSize = d.MaxMessageSize
	}
	if v.Perm == 0 {
		v.Perm = d.Perm
	}
	if v.RingSize == 0 {
		v.RingSize = d.RingSize
	}
	if v.Spin == 0 {
		v.Spin = d.Spin
	}
	if v.QueueDepth == 0 {
		v.QueueDepth = d.QueueDepth
	}
	if v.QueueMsgSize == 0 {
		v.QueueMsgSize = d.QueueMsgSize
	}
	if v.SetupTimeout == 0 {
		v.SetupTimeout = d.SetupTimeout
	}
	if v.MaxPendingSetups == 0 {
		v.MaxPendingSetups = d.MaxPendingSetups
	}
	switch {
	case v.MaxMessageSize < 1 || v.MaxMessageSize > 1<<30:
		return nil, fmt.Errorf("%w: MaxMessageSize %d not in [1, 1 GiB]", ErrBadConfig, v.MaxMessageSize)
	case v.Perm&^os.ModePerm != 0:
		return nil, fmt.Errorf("%w: Perm %v", ErrBadConfig, v.Perm)
	case v.RingSize < 4096 || v.RingSize > 1<<30 || v.RingSize&(v.RingSize-1) != 0:
		return nil, fmt.Errorf("%w: RingSize %d must be a power of two in [4 KiB, 1 GiB]", ErrBadConfig, v.RingSize)
	case v.QueueDepth < 1 || v.QueueMsgSize < 64:
		return nil, fmt.Errorf("%w: QueueDepth %d, QueueMsgSize %d", ErrBadConfig, v.QueueDepth, v.QueueMsgSize)
	case v.SetupTimeout < 0:
		return nil, fmt.Errorf("%w: SetupTimeout %v is negative", ErrBadConfig, v.SetupTimeout)
	case v.MaxPendingSetups < 1 || v.MaxPendingSetups > 1<<16:
		return nil, fmt.Errorf("%w: MaxPendingSetups %d not in [1, 65536]", ErrBadConfig, v.MaxPendingSetups)
	}
	if v.Spin < 0 {
		v.Spin = 0
	}
	return &v, nil
}
