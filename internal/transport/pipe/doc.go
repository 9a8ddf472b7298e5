// Package pipe connects a parent process and a child it starts over two
// anonymous pipes (pipe(2)), one per direction, inherited by the child as
// extra file descriptors.
//
// Start adds the child's ends to cmd.ExtraFiles, tells the child their
// descriptor numbers in the environment variable named by EnvVar
// ("<read fd>,<write fd>" as the child sees them), starts the command and
// closes the child's ends in the parent. Child, in the child, reads and
// unsets the variable, marks the descriptors close-on-exec (so the child's
// own children do not inherit them) and wraps them. Messages travel as
// frames (internal/frame) through transport.StreamConn; each pipe has one
// writer and one reader, so frames never interleave.
//
// When the child exits, however it exits, the kernel closes its ends: the
// parent's Recv returns io.EOF and its Send fails with EPIPE, reported as
// io.EOF. The same holds for the child when the parent dies. Only a
// process that inherited the descriptors without Child having been called
// (a grandchild started before it) keeps a pipe open.
//
// The "pipe" scheme is registered so that ipc.Dial and ipc.Listen explain
// that pipes come from StartChild and ChildConn.
package pipe
