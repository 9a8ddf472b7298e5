package ipc

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Transport names, as they appear in an address's scheme.
const (
	Unix       = "unix"       // unix:///path: Unix stream socket
	UnixPacket = "unixpacket" // unixpacket:///path: Unix SOCK_SEQPACKET socket
	TCP        = "tcp"        // tcp://host:port, TLS through Config.TLS
	FIFO       = "fifo"       // fifo:///path: a pair of named pipes
	PosixMQ    = "posixmq"    // posixmq:///name: a pair of POSIX message queues
	SHM        = "shm"        // shm:///path: shared-memory rings, set up over a Unix socket at path
	Pipe       = "pipe"       // pipe: anonymous pipes between a parent and the child it starts
)

// Addr is a parsed address. It satisfies net.Addr.
type Addr struct {
	Transport string // one of the transport constants
	Path      string // file path (unix, unixpacket, fifo, shm) or queue name (posixmq)
	Host      string // host:port (tcp)
}

// Network returns the transport name.
func (a Addr) Network() string { return a.Transport }

// String returns the address in the form ParseAddr reads.
func (a Addr) String() string {
	switch a.Transport {
	case TCP:
		return "tcp://" + a.Host
	case Pipe:
		return "pipe:"
	}
	return a.Transport + "://" + a.Path
}

var _ net.Addr = Addr{}

// ParseAddr parses an address such as "unix:///run/app.sock",
// "tcp://localhost:7000", "posixmq:///orders" or "pipe:".
func ParseAddr(s string) (Addr, error) {
	bad := func(why string) (Addr, error) {
		return Addr{}, fmt.Errorf("%w: %q: %s", ErrBadAddress, s, why)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return bad("want transport:address, e.g. unix:///run/app.sock")
	}
	switch scheme {
	case Pipe:
		if rest != "" && rest != "//" {
			return bad("pipe: takes no path")
		}
		return Addr{Transport: Pipe}, nil
	case TCP:
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return bad("want tcp://host:port")
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return bad(err.Error())
		}
		return Addr{Transport: TCP, Host: u.Host}, nil
	case Unix, UnixPacket, FIFO, SHM, PosixMQ:
		if !strings.HasPrefix(rest, "//") {
			return bad("want " + scheme + ":///absolute/path")
		}
		p := rest[2:]
		if !strings.HasPrefix(p, "/") || len(p) < 2 || strings.ContainsRune(p, 0) {
			return bad("the path must be absolute, after \"" + scheme + "://\"")
		}
		if scheme == PosixMQ && strings.Contains(p[1:], "/") {
			return bad("a POSIX queue name is one component, like posixmq:///orders")
		}
		return Addr{Transport: scheme, Path: p}, nil
	}
	return bad("unknown transport " + scheme)
}
