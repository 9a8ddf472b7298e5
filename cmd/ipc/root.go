package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/internal/bench"
	"github.com/ipcgo/ipc/internal/mqbench"
	"github.com/ipcgo/ipc/internal/race"
)

// Exit codes of Run.
const (
	exitOK        = 0
	exitFailure   = 1   // an error, or a check that failed
	exitUsage     = 2   // bad flags or arguments
	exitInterrupt = 130 // SIGINT or SIGTERM
)

// usageError marks an error in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// silentError is an error already reported (for example a failed check,
// printed along with the results): Run only turns it into the exit code.
type silentError struct{ err error }

func (e silentError) Error() string { return e.err.Error() }
func (e silentError) Unwrap() error { return e.err }

// Run runs the ipc command line args (without the program name), writing
// results to stdout and errors to stderr, and returns the exit code. A
// cancelled ctx (SIGINT, SIGTERM) stops a running command, which cleans up
// its processes and segments before it returns.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunInput(ctx, args, os.Stdin, stdout, stderr)
}

// RunInput is Run with the standard input given (what `ipc mq pub ... -`
// reads).
func RunInput(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == race.WorkerCommand {
		// The hidden worker subcommand parses its own flags: it is started
		// by the supervisor, not by people.
		return race.RunWorker(args[1:], stderr)
	}
	if len(args) > 0 && args[0] == bench.PeerCommand {
		return bench.RunPeer(args[1:], stderr) // the same, for bench
	}
	if len(args) > 0 && args[0] == mqbench.PeerCommand {
		return mqbench.RunPeer(args[1:], stdin, stdout, stderr) // and for bench mq
	}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		fmt.Fprintln(stderr, "ipc: interrupted")
		return exitInterrupt
	}
	var se silentError
	if !errors.As(err, &se) {
		// The library's errors already name the package ("ipc: dial …").
		msg := err.Error()
		if !strings.HasPrefix(msg, "ipc: ") {
			msg = "ipc: " + msg
		}
		fmt.Fprintln(stderr, msg)
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "Run 'ipc --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ipc",
		Short: "Shared-memory segments and robust cross-process primitives",
		Long: `ipc demonstrates and inspects the shared-memory segments (package shm) and the
robust cross-process primitives (package procsync) of github.com/ipcgo/ipc.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A bare "ipc" or an unknown subcommand is a usage error.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q", args[0])}
			}
			return usageError{errors.New("missing command")}
		},
		RunE: func(cmd *cobra.Command, args []string) error { return nil },
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRaceCmd(), newShmCmd(), newBenchCmd(), newRPCCmd(), newMQCmd(), newDsyncCmd())
	return root
}

// exactArgs is cobra.ExactArgs returning a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}
