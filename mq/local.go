package mq

import (
	"context"
	"fmt"
)

// openLocal opens the local backend on directory dir.
func openLocal(ctx context.Context, dir string, c Config) (backend, error) {
	return nil, fmt.Errorf("%w: the local backend is not written yet", ErrUnsupported)
}
