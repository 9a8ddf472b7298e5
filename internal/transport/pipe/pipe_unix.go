//go:build unix

package pipe

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/ipcgo/ipc/internal/ipcerr"
	"github.com/ipcgo/ipc/internal/transport"
)

// Start starts cmd with a pipe to it and one from it, and returns the
// parent's end of the connection. cmd must not have been started. The
// caller still waits for the command (cmd.Wait) as usual.
func Start(cmd *exec.Cmd, o *transport.Options) (transport.Conn, error) {
	if cmd.Process != nil {
		return nil, errors.New("pipe: exec: already started")
	}
	// The parent's ends stay out of the runtime poller (transport.FD).
	pr, cw, err := transport.Pipe() // child to parent
	if err != nil {
		return nil, err
	}
	cr, pw, err := transport.Pipe() // parent to child
	if err != nil {
		pr.Close()
		cw.Close()
		return nil, err
	}
	transport.GrowPipe(pr.File())
	transport.GrowPipe(pw.File())
	// The child's ends have open file descriptions of their own: the child
	// gets them in blocking mode, as from os.Pipe.
	for _, f := range []*os.File{cr.File(), cw.File()} {
		if rc, err := f.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.SetNonblock(int(fd), false) })
		}
	}
	first := 3 + len(cmd.ExtraFiles)
	extra, env := cmd.ExtraFiles, cmd.Env
	cmd.ExtraFiles = append(cmd.ExtraFiles[:len(cmd.ExtraFiles):len(cmd.ExtraFiles)], cr.File(), cw.File())
	cmd.Env = append(withoutVar(cmd.Environ()), fmt.Sprintf("%s=%d,%d", EnvVar, first, first+1))
	err = cmd.Start()
	cr.Close() // the child has its own copies now
	cw.Close()
	cmd.ExtraFiles = extra
	if err != nil {
		cmd.Env = env
		pr.Close()
		pw.Close()
		return nil, err
	}
	return transport.NewStreamConn(pr, pw, o.MaxMessageSize, pr, pw), nil
}

func withoutVar(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvVar+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Child returns the child's end of the connection its parent made with
// Start. It works once: it unsets EnvVar.
func Child(o *transport.Options) (transport.Conn, error) {
	v, ok := os.LookupEnv(EnvVar)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not set: this process was not started by ipc.StartChild (or ChildConn was already called)",
			ipcerr.ErrBadAddress, EnvVar)
	}
	rs, ws, _ := strings.Cut(v, ",")
	rfd, err1 := strconv.Atoi(rs)
	wfd, err2 := strconv.Atoi(ws)
	if err1 != nil || err2 != nil || rfd < 3 || wfd < 3 || rfd == wfd {
		return nil, fmt.Errorf("%w: %s=%q: want two descriptor numbers", ipcerr.ErrBadAddress, EnvVar, v)
	}
	for _, fd := range []int{rfd, wfd} {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			return nil, fmt.Errorf("%w: %s=%q: descriptor %d is not an inherited pipe", ipcerr.ErrBadAddress, EnvVar, v, fd)
		}
	}
	os.Unsetenv(EnvVar)
	syscall.CloseOnExec(rfd)
	syscall.CloseOnExec(wfd)
	r, err := transport.NewFD(rfd, "pipe:r")
	if err != nil {
		syscall.Close(wfd)
		return nil, err
	}
	w, err := transport.NewFD(wfd, "pipe:w")
	if err != nil {
		r.Close()
		return nil, err
	}
	return transport.NewStreamConn(r, w, o.MaxMessageSize, r, w), nil
}
