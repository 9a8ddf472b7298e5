package mq

import (
	"testing"

	"github.com/ipcgo/ipc/internal/natstest"
)

// The JetStream backend runs every conformance case against a real
// embedded nats-server with JetStream, a fresh one (and a fresh store
// directory) per case.
func init() {
	conformanceBackends = append(conformanceBackends, conformanceBackend{
		name: "jetstream",
		setup: func(t *testing.T) string {
			return natstest.Start(t, nil).URL()
		},
	})
}
