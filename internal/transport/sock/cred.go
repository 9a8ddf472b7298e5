package sock

// Cred is the identity of the process at the other end of a Unix-socket
// connection, as the kernel recorded it (SO_PEERCRED): for the accepting
// side, the process that called connect; for the dialing side, the process
// that called listen. PID is as seen from the caller's PID namespace (0 if
// the peer is not visible there).
type Cred struct {
	PID int
	UID int
	GID int
}

// MaxFiles is the largest number of descriptors one message can carry
// (the kernel's SCM_MAX_FD).
const MaxFiles = 253
