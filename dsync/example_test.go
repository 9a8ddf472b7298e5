package dsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ipcgo/ipc/dsync"
	"github.com/ipcgo/ipc/internal/natsserver"
)

func Example() {
	dir, _ := os.MkdirTemp("", "dsync-example")
	defer os.RemoveAll(dir)
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dsync.Open(ctx, srv.URL(), &dsync.Config{Namespace: "example", TTL: 2 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	mu, _ := c.Mutex("orders")
	lease, err := mu.Lock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fence := dsync.NewFence() // kept by the resource
	fmt.Println("write with the lease's token:", fence.Accept(lease.Token()))
	err = fence.Accept(lease.Token() - 1)
	fmt.Println("write with an older token refused:", errors.Is(err, dsync.ErrStaleToken))
	fmt.Println("unlock:", mu.Unlock(ctx))
	// Output:
	// write with the lease's token: <nil>
	// write with an older token refused: true
	// unlock: <nil>
}
