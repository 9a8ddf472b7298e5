// Package natstest starts real embedded NATS servers with JetStream for
// tests: one server, or a cluster of several on loopback, each with its own
// temporary store, shut down when the test ends.
package natstest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipcgo/ipc/internal/natsserver"
)

// Start starts one JetStream server on 127.0.0.1 at a free port, with a
// store in t.TempDir(). cfg may be nil; its StoreDir, when empty, is set.
// The server is stopped when t ends.
func Start(t testing.TB, cfg *natsserver.Config) *natsserver.Server {
	t.Helper()
	c := natsserver.Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.StoreDir == "" {
		c.StoreDir = t.TempDir()
	}
	s, err := natsserver.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Restart starts a stopped server again at the same port with the same
// store, stopped when t ends.
func Restart(t testing.TB, s *natsserver.Server) *natsserver.Server {
	t.Helper()
	s.Stop()
	n, err := natsserver.Start(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Cluster is a cluster of JetStream servers on loopback.
type Cluster struct {
	Servers []*natsserver.Server
	t       testing.TB
}

// StartCluster starts n servers (n ≥ 3 for replicated streams) that form
// one JetStream cluster, and waits until it has a meta leader. They are
// stopped when t ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports, err := natsserver.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	name := fmt.Sprintf("ipctest-%d", ports[0])
	c := &Cluster{Servers: make([]*natsserver.Server, n), t: t}
	start := make(chan error, n)
	for i := range n {
		go func() {
			s, err := natsserver.Start(natsserver.Config{
				Name:     fmt.Sprintf("%s-%d", name, i),
				StoreDir: t.TempDir(),
				Cluster:  &natsserver.Cluster{Name: name, Port: ports[i], Routes: routes},
				// Members find each other only after all have started.
				ReadyTimeout: 30 * time.Second,
			})
			if err == nil {
				c.Servers[i] = s
				t.Cleanup(s.Stop)
			}
			start <- err
		}()
	}
	for range n {
		if err := <-start; err != nil {
			t.Fatal(err)
		}
	}
	c.WaitLeader(t, 30*time.Second)
	return c
}

// URL lists every member's client address, comma-separated, as nats.Connect
// takes it.
func (c *Cluster) URL() string {
	urls := make([]string, 0, len(c.Servers))
	for _, s := range c.Servers {
		if s != nil && s.Running() {
			urls = append(urls, s.URL())
		}
	}
	return strings.Join(urls, ",")
}

// Stop stops member i.
func (c *Cluster) Stop(i int) { c.Servers[i].Stop() }

// Restart starts stopped member i again with the same name, ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	s, err := natsserver.Start(c.Servers[i].Config())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(s.Stop)
	c.Servers[i] = s
}

// WaitLeader waits until the running members agree on a JetStream meta
// leader and a client can use JetStream.
func (c *Cluster) WaitLeader(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s != nil && s.Running() && s.JetStreamIsLeader() && jetStreamAnswers(c.URL()) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("natstest: no JetStream meta leader within %v", d)
}

func jetStreamAnswers(url string) bool {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(2 * time.Second))
	if err != nil {
		return false
	}
	_, err = js.AccountInfo()
	return err == nil
}
