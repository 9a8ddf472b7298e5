package mq

import (
	"context"
	"testing"
	"time"
)

// A conformance case runs against a freshly opened, empty queue store of
// each backend. Cases may be added in any _test.go file through
// conformanceCases; backends through conformanceBackends. Every case runs
// over every backend: the one body of semantics both backends share.
type conformanceCase struct {
	name string
	run  func(t *testing.T, env *conformanceEnv)
}

// conformanceEnv is what a case gets: a queue, and a way to open more
// handles on the same store (other consumers, a reopen after Close).
type conformanceEnv struct {
	Q    *Queue
	Open func(t *testing.T) *Queue
}

type conformanceBackend struct {
	name string
	// setup prepares an empty store and returns its address; it cleans up
	// through t.Cleanup. It calls t.Skip when the backend cannot run here.
	setup func(t *testing.T) string
}

var (
	conformanceCases    []conformanceCase
	conformanceBackends []conformanceBackend
)

func TestConformance(t *testing.T) {
	if len(conformanceBackends) == 0 {
		t.Skip("no backend registered")
	}
	for _, b := range conformanceBackends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					addr := b.setup(t)
					open := func(t *testing.T) *Queue {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						q, err := Open(ctx, addr, nil)
						if err != nil {
							t.Fatalf("Open %s: %v", addr, err)
						}
						t.Cleanup(func() { q.Close() })
						return q
					}
					c.run(t, &conformanceEnv{Q: open(t), Open: open})
				})
			}
		})
	}
}
