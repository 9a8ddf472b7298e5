package ipc

import (
	"os/exec"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport/pipe"
)

// PipeEnv is the environment variable through which StartChild tells the
// child the numbers of its pipe descriptors; ChildConn reads and unsets it.
const PipeEnv = pipe.EnvVar

// StartChild starts cmd connected to the returned Conn by two anonymous
// pipes, one each way. It appends the child's ends to cmd.ExtraFiles for
// the start only, and sets PipeEnv in the child's environment. The child
// calls ChildConn to pick its end up. cmd must not have been started;
// waiting for it (cmd.Wait) is still the caller's job.
//
// When the child exits or is killed, Recv returns io.EOF (after the
// messages it sent) and Send returns io.EOF. A pipe holds little (64 KiB
// on Linux): a larger Send waits for the child to read, as long as the
// context and the deadline allow. Messages up to Config.MaxMessageSize
// pass.
func StartChild(cmd *exec.Cmd, cfg *Config) (Conn, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, ipcerr.Wrap("start", "pipe:", err)
	}
	pc, err := pipe.Start(cmd, c.options())
	if err != nil {
		return nil, ipcerr.Wrap("start", "pipe:", err)
	}
	return &conn{c: pc, addr: "pipe:"}, nil
}

// ChildConn returns the connection to the parent that started this process
// with StartChild. It can be called once: it unsets PipeEnv and marks the
// descriptors close-on-exec, so the process's own children do not inherit
// them. A process not started by StartChild gets ErrBadAddress. When the
// parent dies, Recv returns io.EOF.
func ChildConn(cfg *Config) (Conn, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, ipcerr.Wrap("child", "pipe:", err)
	}
	pc, err := pipe.Child(c.options())
	if err != nil {
		return nil, ipcerr.Wrap("child", "pipe:", err)
	}
	return &conn{c: pc, addr: "pipe:"}, nil
}
