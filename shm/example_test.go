package shm_test

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/ipcgo/ipc/shm"
)

// A counter in a named segment: every process that opens the segment and
// allocates "hits" gets the same eight bytes.
func Example() {
	name := fmt.Sprintf("example-counter-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer shm.Unlink(name)
	defer seg.Close()

	hits, err := seg.Alloc("hits", 8)
	if err != nil {
		fmt.Println(err)
		return
	}
	counter := hits.Uint64(0) // an atomic view of the shared bytes
	counter.Add(1)
	counter.Add(1)

	// A second handle, as another process would open it, sees the count.
	other, err := shm.Open(name)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer other.Close()
	same, err := other.Lookup("hits")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("hits:", same.Uint64(0).Add(1))
	fmt.Println("aligned:", same.Off%shm.Align == 0)

	if err := seg.Close(); err != nil {
		fmt.Println(err)
	}
	_, err = seg.Lookup("hits")
	fmt.Println("closed:", errors.Is(err, net.ErrClosed))
	// Output:
	// hits: 3
	// aligned: true
	// closed: true
}

// An anonymous segment has no name; hand File() to a child process
// (exec.Cmd.ExtraFiles) and attach there with shm.OpenFile.
func ExampleCreateAnonymous() {
	seg, err := shm.CreateAnonymous(1<<16, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer seg.Close()
	buf, err := seg.Alloc("buf", 1024)
	if err != nil {
		fmt.Println(err)
		return
	}
	copy(buf.Bytes(), "hello")
	fmt.Printf("name %q, %s, token alive: %t\n", seg.Name(), buf.Bytes()[:5], seg.TokenAlive(seg.Token()))
	// Output:
	// name "", hello, token alive: true
}
