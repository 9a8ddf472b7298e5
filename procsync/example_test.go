package procsync_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

// The examples run in one process, but every handle could live in another
// process that opened the same segment with shm.Open.

func ExampleMutex() {
	name := fmt.Sprintf("example-mutex-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Unlink(name)
	defer seg.Close()

	m, err := procsync.NewMutex(seg, "counter-lock", nil)
	if err != nil {
		log.Fatal(err)
	}
	counter, err := seg.Alloc("counter", 8)
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if err := m.Lock(context.Background()); err != nil {
					log.Fatal(err)
				}
				v := counter.Uint64(0)
				v.Store(v.Load() + 1) // a read-modify-write made safe by the lock
				if err := m.Unlock(); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println("counter:", counter.Uint64(0).Load())
	fmt.Println("locked:", m.State().Locked)
	// Output:
	// counter: 400
	// locked: false
}

// A process that locks a robust mutex must handle ErrOwnerDead: the
// previous holder died with the lock held, and the data it protects may be
// half updated. The new holder repairs it and calls MarkConsistent before
// unlocking.
func ExampleMutex_ownerDead() {
	name := fmt.Sprintf("example-ownerdead-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Unlink(name)
	defer seg.Close()
	m, err := procsync.NewMutex(seg, "lock", nil)
	if err != nil {
		log.Fatal(err)
	}

	// Another handle locks the mutex and goes away without unlocking. Closing
	// a handle frees its process slot exactly as the death of its process
	// (even by kill -9) does.
	other, err := shm.Open(name)
	if err != nil {
		log.Fatal(err)
	}
	om, err := procsync.NewMutex(other, "lock", nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := om.Lock(context.Background()); err != nil {
		log.Fatal(err)
	}
	other.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch err := m.Lock(ctx); {
	case errors.Is(err, procsync.ErrOwnerDead):
		fmt.Println("previous owner died: repairing")
		// ... check and repair the protected data here ...
		if err := m.MarkConsistent(); err != nil {
			log.Fatal(err)
		}
	case err != nil:
		log.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		log.Fatal(err)
	}
	st := m.State()
	fmt.Printf("recoveries: %d, inconsistent: %v\n", st.Recoveries, st.Inconsistent)

	// The mutex is healthy again.
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("locked again")
	m.Unlock()
	// Output:
	// previous owner died: repairing
	// recoveries: 1, inconsistent: false
	// locked again
}

func ExampleSemaphore() {
	name := fmt.Sprintf("example-semaphore-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Unlink(name)
	defer seg.Close()

	// Two permits, at most two.
	s, err := procsync.NewSemaphore(seg, "slots", 2, 2, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first:", s.TryAcquire())
	fmt.Println("second:", s.AcquireTimeout(time.Second))
	err = s.TryAcquire()
	fmt.Println("third would block:", errors.Is(err, procsync.ErrWouldBlock))
	err = s.AcquireTimeout(10 * time.Millisecond)
	fmt.Println("third times out:", errors.Is(err, procsync.ErrTimeout))

	if err := s.Release(2); err != nil {
		log.Fatal(err)
	}
	fmt.Println("available:", s.Value())
	err = s.Release(1)
	fmt.Println("release past max:", errors.Is(err, procsync.ErrOverflow))
	// Output:
	// first: <nil>
	// second: <nil>
	// third would block: true
	// third times out: true
	// available: 2
	// release past max: true
}

func ExampleEvent() {
	name := fmt.Sprintf("example-event-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Unlink(name)
	defer seg.Close()

	// A manual-reset event releases every waiter and stays set.
	start, err := procsync.NewEvent(seg, "start", true, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	results := make([]int, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := start.Wait(ctx); err != nil {
				fmt.Println(err)
				return
			}
			results[i] = i * 10
		}()
	}
	if err := start.Set(); err != nil {
		log.Fatal(err)
	}
	wg.Wait()
	fmt.Println("workers:", results, "still set:", start.IsSet())

	// An auto-reset event lets one waiter through per Set.
	token, err := procsync.NewEvent(seg, "token", false, nil)
	if err != nil {
		log.Fatal(err)
	}
	token.Set()
	fmt.Println("first TryWait:", token.TryWait())
	fmt.Println("second TryWait would block:", errors.Is(token.TryWait(), procsync.ErrWouldBlock))
	// Output:
	// workers: [0 10 20] still set: true
	// first TryWait: <nil>
	// second TryWait would block: true
}

func ExampleBarrier() {
	name := fmt.Sprintf("example-barrier-%d", os.Getpid())
	seg, err := shm.Create(name, 4096, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer shm.Unlink(name)
	defer seg.Close()

	const parties = 3
	b, err := procsync.NewBarrier(seg, "phase", parties, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var arrivals []int
	var wg sync.WaitGroup
	for range parties {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 { // two rounds
				idx, err := b.Wait(ctx)
				if err != nil {
					fmt.Println(err)
					return
				}
				mu.Lock()
				arrivals = append(arrivals, idx)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(arrivals)
	// Each round hands out every arrival index once; the last one to
	// arrive (parties-1) released the others.
	fmt.Println("arrival indices:", arrivals)
	fmt.Println("rounds:", b.State().Rounds)
	// Output:
	// arrival indices: [0 0 1 1 2 2]
	// rounds: 2
}
