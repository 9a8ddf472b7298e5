// Package natsserver runs an embedded NATS server with JetStream: the
// server behind `ipc mq serve` and behind the tests of the packages that
// speak to NATS (through package natstest). It is the real nats-server
// (github.com/nats-io/nats-server/v2), started in this process.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned by Start when the server does not accept clients
// within Config.ReadyTimeout.
var ErrNotReady = errors.New("natsserver: server not ready")

// Config says how to run one server. Zero fields take the defaults named on
// them.
type Config struct {
	// Name is the server's name, unique within a cluster ("ipc-" + port
	// when empty).
	Name string
	// Host and Port are where clients connect (127.0.0.1; Port 0 picks a
	// free port, -1 too).
	Host string
	Port int
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// SyncAlways makes JetStream fsync every write before acknowledging it
	// (`sync_interval: always`); otherwise it syncs every SyncInterval
	// (the server's default, 2 minutes, when zero).
	SyncAlways   bool
	SyncInterval time.Duration
	// Cluster, when set, joins this server to a cluster.
	Cluster *Cluster
	// ReadyTimeout bounds the wait for the server to accept clients (10 s).
	ReadyTimeout time.Duration
	// Logs sends the server's own log lines to standard error.
	Logs bool
}

// Cluster says how a server joins a cluster: its own route listener and the
// routes to every member (its own included is fine).
type Cluster struct {
	Name   string   // the cluster's name, the same on every member
	Host   string   // route listener host (127.0.0.1 when empty)
	Port   int      // route listener port (must be fixed: members name it)
	Routes []string // "nats://127.0.0.1:PORT" of every member
}

// Server is a running embedded server.
type Server struct {
	*server.Server
	cfg  Config
	port int // the client port it listens on, kept after Stop
}

// Start starts a server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: Config.StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName:   cfg.Name,
		Host:         cfg.Host,
		Port:         cfg.Port,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		NoSigs:       true,
		NoLog:        !cfg.Logs,
		MaxPayload:   8 << 20,
	}
	if c := cfg.Cluster; c != nil {
		host := c.Host
		if host == "" {
			host = "127.0.0.1"
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: c.Port}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsserver: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
		if opts.ServerName == "" {
			opts.ServerName = "ipc-" + strconv.Itoa(c.Port)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, ErrNotReady
	}
	_, p, _ := net.SplitHostPort(s.Addr().String())
	port, _ := strconv.Atoi(p)
	return &Server{Server: s, cfg: cfg, port: port}, nil
}

// URL is the address clients dial, "nats://127.0.0.1:PORT" (also after
// Stop).
func (s *Server) URL() string { return fmt.Sprintf("nats://%s:%d", s.cfg.Host, s.port) }

// Port is the client port the server listens on.
func (s *Server) Port() int { return s.port }

// Config is the configuration the server runs with; Port is the one it
// listens on, so that a restart with it comes back at the same address.
func (s *Server) Config() Config {
	c := s.cfg
	c.Port = s.Port()
	return c
}

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment ago
// (for route listeners, whose ports every member must know in advance).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsserver: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
