package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipcgo/ipc"
)

// PeerCommand is the hidden subcommand under which Run re-executes its own
// binary as the other end of a measurement. The program's main (or a test
// binary's TestMain) must hand os.Args[2:] to RunPeer when os.Args[1] is
// PeerCommand.
const PeerCommand = "bench-peer"

// peerArgs are the arguments of a peer process.
type peerArgs struct {
	transport string
	size      int
	limit     time.Duration
	addr      string // address, socket path, first FIFO or queue name
	addr2     string // second FIFO or queue name
	mem       int    // size of the shared mapping (raw-shmspin)
	cpu       int    // the CPU to run on, or -1

	// The driver role only.
	role          string
	duration      time.Duration
	maxRoundTrips int
	dir           string
	seq           int
	owner         int
	peerCPU       int    // the CPU of the driver's peer, or -1
	callers       string // rpc driver: the numbers of concurrent callers, comma-separated
}

// RunPeer is the body of a peer process. It returns the exit code; errors
// go to stderr, a line starting with "skip: " for a measurement that
// cannot be made on this system.
func RunPeer(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(PeerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a peerArgs
	fs.StringVar(&a.transport, "transport", "", "transport or baseline name")
	fs.IntVar(&a.size, "size", 0, "message size")
	fs.DurationVar(&a.limit, "limit", time.Minute, "exit after this long, whatever happens")
	fs.StringVar(&a.addr, "addr", "", "address")
	fs.StringVar(&a.addr2, "addr2", "", "second address")
	fs.IntVar(&a.mem, "mem", 0, "size of the shared mapping")
	fs.IntVar(&a.cpu, "cpu", -1, "run on this CPU only")
	fs.StringVar(&a.role, "role", "", `"driver": make one measurement as its measuring end; "rpc-driver", "rpc-server": the two ends of an rpc measurement`)
	fs.DurationVar(&a.duration, "duration", time.Second, "driver: measurement duration")
	fs.IntVar(&a.maxRoundTrips, "max-round-trips", 1_000_000, "driver: most round trips")
	fs.StringVar(&a.dir, "dir", "", "driver: directory for files")
	fs.IntVar(&a.seq, "seq", 0, "driver: measurement number")
	fs.IntVar(&a.owner, "owner", 0, "driver: pid that names queues")
	fs.IntVar(&a.peerCPU, "peer-cpu", -1, "driver: the peer's CPU")
	fs.StringVar(&a.callers, "callers", "1", "rpc driver: numbers of concurrent callers")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if a.size < 1 || a.size > MaxSize {
		fmt.Fprintf(stderr, "%s: bad size %d\n", PeerCommand, a.size)
		return 2
	}
	if a.cpu >= 0 {
		if err := pinProcess(a.cpu); err != nil {
			fmt.Fprintf(stderr, "%s %s: %v\n", PeerCommand, a.transport, err)
			return 1
		}
	}
	// Never outlive the pair's time limit, whatever the parent does.
	time.AfterFunc(a.limit, func() {
		fmt.Fprintf(stderr, "%s %s: time limit %v reached\n", PeerCommand, a.transport, a.limit)
		os.Exit(3)
	})
	switch a.role {
	case driverRole:
		return driverMain(a, os.Stdout, stderr)
	case rpcDriverRole:
		return rpcDriverMain(a, os.Stdout, stderr)
	case rpcServerRole:
		if err := rpcServerMain(a, os.Stdout); err != nil {
			fmt.Fprintf(stderr, "%s %s server (pid %d): %v\n", PeerCommand, a.transport, os.Getpid(), err)
			return 1
		}
		return 0
	}
	if err := runPeer(a); err != nil {
		if isSkip(err) {
			fmt.Fprintf(stderr, "%s%s\n", skipPrefix, skipReason(err))
		} else {
			fmt.Fprintf(stderr, "%s %s (pid %d): %v\n", PeerCommand, a.transport, os.Getpid(), err)
		}
		return 1
	}
	return 0
}

func runPeer(a peerArgs) error {
	switch {
	case a.transport == ipc.Pipe:
		return pipePeer(a.size)
	case IsBaseline(a.transport):
		return rawPeer(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return framedPeer(ctx, a.addr, a.size)
}
