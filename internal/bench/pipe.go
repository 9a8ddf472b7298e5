package bench

import (
	"context"
	"os"
	"os/exec"

	"github.com/ipcgo/ipc"
)

// pipeSetup starts the peer with ipc.StartChild; the peer picks its end up
// with ipc.ChildConn.
type pipeSetup struct {
	m *measurement
	c ipc.Conn
}

func newPipeSetup(m *measurement) (setup, error) { return &pipeSetup{m: m}, nil }

func (s *pipeSetup) prepare() ([]string, []*os.File, error) { return nil, nil, nil }

func (s *pipeSetup) start(cmd *exec.Cmd) error {
	c, err := ipc.StartChild(cmd, benchConfig(s.m.size))
	if err != nil {
		return err
	}
	s.c = c
	return nil
}

func (s *pipeSetup) connect(context.Context) (session, error) {
	c := s.c
	s.c = nil
	return &msgSession{ep: connEndpoint{c}, size: s.m.size}, nil
}

func (s *pipeSetup) cleanup() {
	if s.c != nil {
		_ = s.c.Close()
	}
}

// pipePeer is the peer of the pipe transport.
func pipePeer(size int) error {
	c, err := ipc.ChildConn(benchConfig(size))
	if err != nil {
		return err
	}
	defer c.Close()
	return serve(connEndpoint{c}, size)
}
