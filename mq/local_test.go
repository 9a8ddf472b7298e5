package mq

import (
	"testing"
)

func init() {
	conformanceBackends = append(conformanceBackends, conformanceBackend{
		name:  "local",
		setup: func(t *testing.T) string { return "file://" + t.TempDir() },
	})
}
