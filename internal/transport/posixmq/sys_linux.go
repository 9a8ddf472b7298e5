//go:build linux

package posixmq

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

// attr is struct mq_attr: four C longs (a Go int on Linux) and four
// reserved ones.
type attr struct {
	Flags   int
	MaxMsg  int
	MsgSize int
	CurMsgs int
	_       [4]int
}

// mqOpen is mq_open(2). name carries its leading '/', which the system
// call, unlike the C library function, does not take.
func mqOpen(name string, flag int, perm uint32, a *attr) (int, error) {
	p, err := unix.BytePtrFromString(strings.TrimPrefix(name, "/"))
	if err != nil {
		return -1, err
	}
	// unsafe: the name and *a are read by the kernel during the call only
	// (no C library wraps these system calls in Go).
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flag),
		uintptr(perm), uintptr(unsafe.Pointer(a)), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// mqUnlink is mq_unlink(2).
func mqUnlink(name string) error {
	p, err := unix.BytePtrFromString(strings.TrimPrefix(name, "/"))
	if err != nil {
		return err
	}
	// unsafe: as in mqOpen.
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// mqSend is mq_timedsend(2). On a descriptor in blocking mode it waits
// while the queue is full, until the absolute CLOCK_REALTIME time *until
// (ETIMEDOUT); until nil waits without end, and a time in the past does not
// wait at all. A non-blocking descriptor gives EAGAIN instead of waiting.
func mqSend(fd uintptr, msg []byte, prio uint, until *unix.Timespec) syscall.Errno {
	var p unsafe.Pointer
	if len(msg) > 0 {
		p = unsafe.Pointer(&msg[0])
	}
	// unsafe: msg and *until are Go memory the kernel reads during the
	// call; converted in the call expression, they stay live and in place
	// until it returns. Syscall6, not RawSyscall6: the call may block, and
	// the runtime must be able to hand this thread's P to other goroutines.
	_, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, fd, uintptr(p), uintptr(len(msg)), uintptr(prio),
		uintptr(unsafe.Pointer(until)), 0)
	return e
}

// mqRecv is mq_timedreceive(2), with the timeout of mqSend, waiting while
// the queue is empty. buf must hold the queue's message size; the
// message's priority is stored in *prio.
func mqRecv(fd uintptr, buf []byte, prio *uint32, until *unix.Timespec) (int, syscall.Errno) {
	// unsafe: buf, *prio and *until are written or read by the kernel
	// during the call only, as in mqSend.
	n, _, e := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		uintptr(unsafe.Pointer(prio)), uintptr(unsafe.Pointer(until)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// mqGetAttr is mq_getsetattr(2) reading the attributes.
func mqGetAttr(fd uintptr) (attr, error) {
	var a attr
	// unsafe: the kernel writes a during the call only.
	if _, _, e := unix.Syscall(unix.SYS_MQ_GETSETATTR, fd, 0, uintptr(unsafe.Pointer(&a))); e != 0 {
		return a, e
	}
	return a, nil
}

// MaxPriority is the highest message priority (MQ_PRIO_MAX - 1 on Linux).
const MaxPriority = 32767

// Kernel limits (/proc/sys/fs/mqueue) and the hard limits that apply with
// CAP_SYS_RESOURCE.
const (
	procDir     = "/proc/sys/fs/mqueue/"
	hardMsgMax  = 65536
	hardSizeMax = 16 << 20
	nameMax     = 255 // NAME_MAX: a queue name without its '/'
)

// sysLimit reads one of the files in /proc/sys/fs/mqueue, or -1.
func sysLimit(name string) int {
	b, err := os.ReadFile(procDir + name)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// queueBytes is what the kernel charges to RLIMIT_MSGQUEUE for a queue of
// depth messages of size bytes (ipc/mqueue.c: the messages, a struct
// msg_msg per message and a tree node per priority in use; the last two
// are estimated at 48 and 40 bytes).
func queueBytes(depth, size int) int {
	return depth*size + depth*48 + min(depth, MaxPriority+1)*40
}

// openErr explains an error of mq_open at the kernel's limits.
func openErr(name string, err error, depth, size int) error {
	switch err {
	case unix.EINVAL:
		return fmt.Errorf("%w: POSIX queue %s: QueueDepth %d / QueueMsgSize %d beyond the kernel's limits: msg_max %d and msgsize_max %d (%s), or %d and %d with CAP_SYS_RESOURCE",
			ipcerr.ErrBadConfig, name, depth, size, sysLimit("msg_max"), sysLimit("msgsize_max"), procDir, hardMsgMax, hardSizeMax)
	case unix.EMFILE:
		var rl unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &rl)
		return fmt.Errorf("POSIX queue %s: the queues of this user would exceed RLIMIT_MSGQUEUE (%d bytes; this queue takes about %d), or the process has too many open files: %w",
			name, rl.Cur, queueBytes(depth, size), err)
	case unix.ENOSPC:
		return fmt.Errorf("POSIX queue %s: the system has reached queues_max (%d queues, %s): %w",
			name, sysLimit("queues_max"), procDir, err)
	case unix.ENAMETOOLONG:
		return fmt.Errorf("%w: POSIX queue name %s longer than %d bytes", ipcerr.ErrBadAddress, name, nameMax)
	}
	return &os.PathError{Op: "mq_open", Path: name, Err: err}
}

// checkAttr applies the kernel's rule for queue attributes (ipc/mqueue.c):
// up to msg_max and msgsize_max, or up to the hard limits with
// CAP_SYS_RESOURCE. Listen uses it to refuse at once a Config its clients
// could not use.
func checkAttr(name string, depth, size int) error {
	maxDepth, maxSize := sysLimit("msg_max"), sysLimit("msgsize_max")
	if hasCap(unix.CAP_SYS_RESOURCE) || maxDepth < 0 || maxSize < 0 {
		maxDepth, maxSize = hardMsgMax, hardSizeMax
	}
	if depth > maxDepth || size > maxSize {
		return openErr(name, unix.EINVAL, depth, size)
	}
	return nil
}

// hasCap reports whether the process has capability c in its effective set.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}
