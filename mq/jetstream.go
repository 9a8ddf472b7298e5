package mq

import (
	"context"
	"fmt"
)

// openJetStream opens the JetStream backend on the NATS server(s) at url.
func openJetStream(ctx context.Context, url string, c Config) (backend, error) {
	return nil, fmt.Errorf("%w: the JetStream backend is not written yet", ErrUnsupported)
}
