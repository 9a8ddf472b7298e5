package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/ipcgo/ipc"
)

// testUnavailable names transports that tests pretend are not available.
var testUnavailable = map[string]bool{}

// newSetup returns the setup of m's transport.
func newSetup(m *measurement) (setup, error) {
	switch {
	case testUnavailable[m.name]:
		return nil, fmt.Errorf("%w: transport %s on this system", ipc.ErrUnsupported, m.name)
	case m.name == ipc.Pipe:
		return newPipeSetup(m)
	case IsBaseline(m.name):
		return newRawSetup(m)
	}
	return &framedSetup{m: m}, nil
}

// framedSetup listens at an address of the transport with ipc.Listen; the
// peer dials it with ipc.Dial.
type framedSetup struct {
	m    *measurement
	addr string
	l    *ipc.Listener
}

// benchConfig is the configuration both ends use: the defaults, with room
// for the largest message.
func benchConfig(size int) *ipc.Config {
	cfg := ipc.DefaultConfig()
	cfg.MaxMessageSize = max(cfg.MaxMessageSize, size)
	return cfg
}

func (s *framedSetup) prepare() ([]string, []*os.File, error) {
	m := s.m
	base := fmt.Sprintf("%s-%d", m.name, m.seq)
	var err error
	for try := 0; try < 5; try++ {
		switch m.name {
		case ipc.TCP:
			var port int
			if port, err = freePort(); err != nil {
				return nil, nil, err
			}
			s.addr = "tcp://127.0.0.1:" + strconv.Itoa(port)
		case ipc.PosixMQ:
			s.addr = fmt.Sprintf("posixmq:///ipcbench-%d-%d", m.owner, m.seq)
		default:
			s.addr = m.name + "://" + filepath.Join(m.dir, base)
		}
		s.l, err = ipc.Listen(s.addr, benchConfig(m.size))
		if err == nil || m.name != ipc.TCP || !errors.Is(err, ipc.ErrAddrInUse) {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	return []string{"--addr", s.addr}, nil, nil
}

// freePort returns a TCP port of the loopback interface that was free a
// moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *framedSetup) start(cmd *exec.Cmd) error { return cmd.Start() }

func (s *framedSetup) connect(ctx context.Context) (session, error) {
	c, err := s.l.AcceptConn(ctx)
	if err != nil {
		return nil, err
	}
	return &msgSession{ep: connEndpoint{c}, size: s.m.size}, nil
}

func (s *framedSetup) cleanup() {
	if s.l != nil {
		_ = s.l.Close()
	}
}

// framedPeer is the peer of a framedSetup.
func framedPeer(ctx context.Context, addr string, size int) error {
	c, err := ipc.Dial(ctx, addr, benchConfig(size))
	if err != nil {
		return err
	}
	defer c.Close()
	return serve(connEndpoint{c}, size)
}
