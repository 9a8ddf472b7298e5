package dsync_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ipcgo/ipc/dsync"
	"github.com/ipcgo/ipc/internal/natsserver"
)

// exampleClients starts an embedded server and opens n clients on it; the
// returned function closes them and stops the server.
func exampleClients(n int) ([]*dsync.Client, func(), error) {
	dir, err := os.MkdirTemp("", "dsync-example")
	if err != nil {
		return nil, nil, err
	}
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	var cs []*dsync.Client
	done := func() {
		for _, c := range cs {
			c.Close()
		}
		srv.Stop()
		os.RemoveAll(dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range n {
		c, err := dsync.Open(ctx, srv.URL(), &dsync.Config{Namespace: "example", TTL: 2 * time.Second})
		if err != nil {
			done()
			return nil, nil, err
		}
		cs = append(cs, c)
	}
	return cs, done, nil
}

func ExampleSemaphore() {
	cs, done, err := exampleClients(1)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sem, _ := cs[0].Semaphore("workers", 2) // every user says 2
	a, _ := sem.Acquire(ctx)
	b, _ := sem.Acquire(ctx)
	fmt.Println("two permits:", a.Permit() != b.Permit())
	_, err = sem.TryAcquire(ctx)
	fmt.Println("a third would wait:", err != nil)
	fmt.Println("release:", sem.Release(ctx, a))
	c, _ := sem.TryAcquire(ctx)
	fmt.Println("the same permit, a newer token:", c.Permit() == a.Permit() && c.Token() > a.Token())
	// Output:
	// two permits: true
	// a third would wait: true
	// release: <nil>
	// the same permit, a newer token: true
}

func ExampleElection() {
	cs, done, err := exampleClients(2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	e1, _ := cs[0].Election("scheduler")
	e2, _ := cs[1].Election("scheduler")
	obs := e2.Observe(ctx)
	term1, _ := e1.Campaign(ctx, []byte("node-1")) // leads: nobody else campaigns
	fmt.Println("leader:", string((<-obs).Value))
	elected := make(chan uint64)
	go func() {
		l, err := e2.Campaign(ctx, []byte("node-2")) // waits while node-1 leads
		if err != nil {
			elected <- 0
			return
		}
		elected <- l.Token()
	}()
	ld, _ := e2.Leader(ctx)
	fmt.Println("still:", string(ld.Value))
	_ = e1.Resign(ctx)
	term2 := <-elected
	fmt.Println("next leader:", string((<-obs).Value), "with a larger term:", term2 > term1.Token())
	// Output:
	// leader: node-1
	// still: node-1
	// next leader: node-2 with a larger term: true
}
