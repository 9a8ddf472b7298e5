//go:build linux

package shmconn

import (
	"encoding/binary"
	"fmt"

	"github.com/ipcgo/ipc/internal/ipcerr"
)

// The hello each side sends once over the Unix socket (PROTOCOL.md, "shm
// transport"). The server's hello carries the segment's memfd.
const (
	helloSize    = 32
	helloMagic   = "IPCS"
	helloVersion = 1

	roleClient = 1
	roleServer = 2

	statusOK         = 0
	statusVersion    = 1 // the server does not speak the client's version
	statusNotAllowed = 2 // the client's uid is not in AllowUIDs
	statusFailed     = 3 // the server could not set the connection up
	statusBusy       = 4 // the server holds MaxPendingSetups connections already

	// ring names in the segment
	ringC2S = "ipc.c2s"
	ringS2C = "ipc.s2c"
)

type hello struct {
	version  uint16
	role     uint8
	status   uint8
	ringSize uint64
	maxMsg   uint64
}

func (h hello) encode() []byte {
	b := make([]byte, helloSize)
	copy(b, helloMagic)
	le := binary.LittleEndian
	le.PutUint16(b[4:], h.version)
	b[6], b[7] = h.role, h.status
	le.PutUint64(b[8:], h.ringSize)
	le.PutUint64(b[16:], h.maxMsg)
	return b
}

// decodeHello checks the magic and the version (ErrVersion) of a hello
// from a peer in role want.
func decodeHello(b []byte, want uint8) (hello, error) {
	if len(b) != helloSize || string(b[:4]) != helloMagic {
		return hello{}, fmt.Errorf("%w: the peer is not an shm endpoint (bad hello)", ipcerr.ErrVersion)
	}
	le := binary.LittleEndian
	h := hello{version: le.Uint16(b[4:]), role: b[6], status: b[7],
		ringSize: le.Uint64(b[8:]), maxMsg: le.Uint64(b[16:])}
	if h.version != helloVersion {
		return h, fmt.Errorf("%w: peer speaks shm protocol %d, this build %d", ipcerr.ErrVersion, h.version, helloVersion)
	}
	if h.role != want {
		return h, fmt.Errorf("%w: hello from role %d, want %d", ipcerr.ErrVersion, h.role, want)
	}
	return h, nil
}
