package mq

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ipcgo/ipc/internal/ipctest"
)

// The peers of the multi-process and crash tests. Each opens the queue at
// its first argument.
var peers = ipctest.Peers{
	"producer": peerProducer,
	"consumer": peerConsumer,
	"holder":   peerHolder,
	"park":     peerPark,
}

func peerOpen(addr string) (*Queue, context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	q, err := Open(ctx, addr, nil)
	if err != nil {
		cancel()
	}
	return q, ctx, cancel, err
}

// producer ADDR STREAM N PREFIX: publishes N messages with ids and data
// PREFIX-i, then prints "done".
func peerProducer(args []string) int {
	q, ctx, cancel, err := peerOpen(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer cancel()
	defer q.Close()
	n, _ := strconv.Atoi(args[2])
	for i := range n {
		id := fmt.Sprintf("%s-%d", args[3], i)
		if _, err := q.Publish(ctx, args[1], []byte(id), &PublishOptions{ID: id}); err != nil {
			return ipctest.Fail("publish %s: %v", id, err)
		}
	}
	fmt.Println("done")
	return 0
}

// consumer ADDR STREAM GROUP FILE: consumes and acks until killed,
// appending "seq data" to FILE after each successful ack.
func peerConsumer(args []string) int {
	q, ctx, cancel, err := peerOpen(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer cancel()
	defer q.Close()
	f, err := os.OpenFile(args[3], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return ipctest.Fail("%v", err)
	}
	c, err := q.Consumer(ctx, args[1], args[2])
	if err != nil {
		return ipctest.Fail("consumer: %v", err)
	}
	fmt.Println("ready")
	for {
		ds, err := c.Fetch(context.Background(), 8)
		if err != nil {
			return ipctest.Fail("fetch: %v", err)
		}
		for _, d := range ds {
			if err := d.Ack(context.Background()); err != nil {
				return ipctest.Fail("ack %d: %v", d.Seq, err)
			}
			fmt.Fprintf(f, "%d %s\n", d.Seq, d.Data)
		}
	}
}

// holder ADDR STREAM GROUP N: takes N deliveries, prints "held SEQ,..."
// and waits to be killed.
func peerHolder(args []string) int {
	q, ctx, cancel, err := peerOpen(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer cancel()
	c, err := q.Consumer(ctx, args[1], args[2])
	if err != nil {
		return ipctest.Fail("consumer: %v", err)
	}
	n, _ := strconv.Atoi(args[3])
	var seqs []string
	for len(seqs) < n {
		ds, err := c.Fetch(ctx, n-len(seqs))
		if err != nil {
			return ipctest.Fail("fetch: %v", err)
		}
		for _, d := range ds {
			seqs = append(seqs, strconv.FormatUint(d.Seq, 10))
		}
	}
	fmt.Println("held " + strings.Join(seqs, ","))
	select {}
}

// park ADDR STEP OP STREAM [GROUP]: does OP (publish, or consume = fetch
// and ack) with the test hook set to park at STEP: there it prints
// "parked" and waits to be killed.
func peerPark(args []string) int {
	step := args[1]
	if step == "compact" {
		compactAt = 256
	}
	localHook = func(s string) {
		if s == step {
			fmt.Println("parked")
			select {}
		}
	}
	q, ctx, cancel, err := peerOpen(args[0])
	if err != nil {
		return ipctest.Fail("open: %v", err)
	}
	defer cancel()
	switch args[2] {
	case "publish":
		for i := 0; ; i++ {
			if _, err := q.Publish(ctx, args[3], []byte(fmt.Sprintf("unacked-%d", i)), nil); err != nil {
				return ipctest.Fail("publish: %v", err)
			}
		}
	case "consume":
		c, err := q.Consumer(ctx, args[3], args[4])
		if err != nil {
			return ipctest.Fail("consumer: %v", err)
		}
		for {
			d, err := c.Next(ctx)
			if err != nil {
				return ipctest.Fail("next: %v", err)
			}
			if err := d.Ack(ctx); err != nil {
				return ipctest.Fail("ack: %v", err)
			}
			fmt.Println("acked", d.Seq)
		}
	}
	return ipctest.Fail("op %q", args[2])
}
