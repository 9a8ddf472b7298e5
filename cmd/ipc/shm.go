package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/procsync"
	"github.com/ipcgo/ipc/shm"
)

func newShmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shm",
		Short: "List, inspect and remove shared-memory segments",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError{errors.New("shm needs a subcommand: ls, inspect or rm")}
		},
	}
	cmd.AddCommand(newShmLsCmd(), newShmInspectCmd(), newShmRmCmd())
	return cmd
}

// segmentJSON is one segment in the output of `shm ls --json` and
// `shm inspect --json`.
type segmentJSON struct {
	Name         string    `json:"name"`
	Size         int64     `json:"size"`
	Version      uint32    `json:"version"`
	CreatorPID   int       `json:"creator_pid"`
	CreatorUID   int       `json:"creator_uid"`
	CreatorAlive bool      `json:"creator_alive"`
	Created      time.Time `json:"created"`
	AgeSeconds   float64   `json:"age_s"`
	Slots        int       `json:"slots"`
	Objects      int       `json:"objects"`
	Error        string    `json:"error,omitempty"`
}

func segmentOf(info shm.Info, now time.Time) segmentJSON {
	s := segmentJSON{Name: info.Name}
	if info.Err != nil {
		s.Error = info.Err.Error()
		return s
	}
	s.Size, s.Version, s.Slots, s.Objects = info.Size, info.Version, info.Slots, info.Objects
	s.CreatorPID, s.CreatorUID, s.Created = info.CreatorPID, info.CreatorUID, info.Created
	s.CreatorAlive = pidAlive(info.CreatorPID)
	s.AgeSeconds = float64(now.Sub(info.Created).Round(time.Millisecond)) / float64(time.Second)
	return s
}

func newShmLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List the segments in " + shm.Dir,
		Long: `ls lists the segments of this package in ` + shm.Dir + `: name, size, creator pid and
whether that process is still alive, and age. Files of other programs are not
listed; a damaged segment is listed with its error.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			infos, err := shm.List()
			if err != nil {
				return err
			}
			now := time.Now()
			segs := make([]segmentJSON, 0, len(infos))
			for _, info := range infos {
				segs = append(segs, segmentOf(info, now))
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Segments []segmentJSON `json:"segments"`
				}{segs})
			}
			if len(segs) == 0 {
				fmt.Fprintf(out, "no segments in %s\n", shm.Dir)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tCREATOR\tALIVE\tAGE\tSLOTS\tOBJECTS")
			for _, s := range segs {
				if s.Error != "" {
					fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\terror: %s\n", s.Name, s.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\n", s.Name, humanBytes(s.Size), s.CreatorPID,
					yesNo(s.CreatorAlive), humanAge(now.Sub(s.Created)), s.Slots, s.Objects)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// inspectJSON is the output of `shm inspect --json`.
type inspectJSON struct {
	Segment  segmentJSON            `json:"segment"`
	Attached []shm.Owner            `json:"attached"`
	Objects  []procsync.ObjectState `json:"objects"`
}

func newShmInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect NAME [--json]",
		Short: "Show a segment's header, attached processes and objects",
		Long: `inspect shows a segment's header, the processes attached to it, and each object
of its directory: name, kind, a summary of its state, its owners (pid and
whether alive) and its waiters. User data regions are shown as kind "data".
Nothing is locked or changed, but inspecting attaches to the segment (using one
process slot while it runs).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			seg, err := shm.Open(name)
			if err != nil {
				return err
			}
			defer seg.Close()
			objs, warn, err := inspectObjects(seg)
			if err != nil {
				return err
			}
			if warn != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "ipc: warning: %s\n", warn)
			}
			res := inspectJSON{Segment: segmentOf(seg.Info(), time.Now()), Attached: []shm.Owner{}, Objects: objs}
			for i := 0; i < seg.Slots(); i++ {
				if i == seg.Slot() {
					continue // this command's own handle
				}
				if _, pid, alive := seg.SlotInfo(i); alive {
					res.Attached = append(res.Attached, shm.Owner{Slot: i, PID: pid, Alive: true})
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, res)
			}
			printInspect(out, res)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func printInspect(w io.Writer, r inspectJSON) {
	s := r.Segment
	fmt.Fprintf(w, "segment %s\n", s.Name)
	fmt.Fprintf(w, "  size      %s (%d bytes), layout version %d\n", humanBytes(s.Size), s.Size, s.Version)
	fmt.Fprintf(w, "  creator   pid %d (%s), uid %d\n", s.CreatorPID, aliveWord(s.CreatorAlive), s.CreatorUID)
	fmt.Fprintf(w, "  created   %s (%s ago)\n", s.Created.Format(time.RFC3339), humanAge(time.Since(s.Created)))
	fmt.Fprintf(w, "  capacity  %d process slots, %d directory entries\n", s.Slots, s.Objects)
	pids := make([]string, 0, len(r.Attached))
	for _, o := range r.Attached {
		pids = append(pids, fmt.Sprintf("%d (slot %d)", o.PID, o.Slot))
	}
	if len(pids) == 0 {
		pids = append(pids, "none")
	}
	fmt.Fprintf(w, "  attached  %s\n", strings.Join(pids, ", "))
	fmt.Fprintln(w)
	if len(r.Objects) == 0 {
		fmt.Fprintln(w, "no objects")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tOWNERS\tWAITERS\tSTATE")
	for _, o := range r.Objects {
		owners := make([]string, 0, len(o.Owners))
		for _, ow := range o.Owners {
			pid := fmt.Sprint(ow.PID)
			if ow.PID == 0 {
				pid = "?"
			}
			owners = append(owners, fmt.Sprintf("%s (%s)", pid, aliveWord(ow.Alive)))
		}
		if len(owners) == 0 {
			owners = append(owners, "-")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", o.Name, o.Kind, o.Size, strings.Join(owners, ", "), o.Waiters, o.Summary)
	}
	tw.Flush()
}

func newShmRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Remove segments",
		Long: `rm removes the named segments from ` + shm.Dir + `. Processes attached to a segment
keep using it until they detach. Files that are not segments of this package
are refused.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, name := range args {
				if err := shm.Unlink(name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", name)
			}
			return errors.Join(errs...)
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func aliveWord(b bool) string {
	if b {
		return "alive"
	}
	return "dead"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
