// Command ipc demonstrates and inspects the shared-memory segments and
// cross-process primitives of this module:
//
//	ipc race [--procs N] [--iters M] [--json]     processes racing on one counter
//	ipc race --kill K [--procs N] [--json]        mutex holders killed and recovered
//	ipc shm ls [--json]                           list segments in /dev/shm
//	ipc shm inspect NAME [--json]                 a segment's header and objects
//	ipc shm rm NAME...                            remove segments
//	ipc bench [--transports L] [--sizes L] [--json] [--report F.html]
//	                                              latency and throughput of every transport
//	ipc bench rpc [--systems L] [--callers L] [--json] [--svg F.svg]
//	                                              rpc unary calls and streams against grpc-go, net/rpc, raw
//	ipc dsync ls ADDR [--namespace NS] [--json]   dsync locks, permits, candidacies on NATS
//	ipc mq pub|consume|ls|dlq|check|serve ...   durable queues (file:// or nats://)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
