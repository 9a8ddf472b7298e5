//go:build !linux

package bench

import "fmt"

func newRawSetup(m *measurement) (setup, error) {
	return nil, fmt.Errorf("%w: the %s baseline needs Linux", errSkip, m.name)
}

func rawPeer(a peerArgs) error {
	return fmt.Errorf("%w: the %s baseline needs Linux", errSkip, a.transport)
}
