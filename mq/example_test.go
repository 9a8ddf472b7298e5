package mq_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/ipcgo/ipc/mq"
)

// A work queue on a directory: a producer publishes jobs, a consumer (in
// this process here; in any process in practice) takes and acks them.
func Example() {
	dir, _ := os.MkdirTemp("", "mq-example-")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	q, err := mq.Open(ctx, "file://"+dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	q.CreateStream(ctx, mq.StreamConfig{Name: "jobs", Retention: mq.WorkQueuePolicy})
	q.CreateGroup(ctx, "jobs", mq.GroupConfig{Name: "workers", AckWait: time.Minute, DeadLetter: "jobs-dead"})

	pa, _ := q.Publish(ctx, "jobs", []byte("resize image 42"), &mq.PublishOptions{ID: "job-42"})
	dup, _ := q.Publish(ctx, "jobs", []byte("resize image 42"), &mq.PublishOptions{ID: "job-42"})
	fmt.Println("published seq", pa.Seq, "again:", dup.Duplicate)

	c, _ := q.Consumer(ctx, "jobs", "workers")
	d, err := c.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("got %q attempt %d\n", d.Data, d.Attempt)
	d.Ack(ctx)

	si, _ := q.StreamInfo(ctx, "jobs")
	fmt.Println("left in the work queue:", si.Msgs)
	// Output:
	// published seq 1 again: true
	// got "resize image 42" attempt 1
	// left in the work queue: 0
}
