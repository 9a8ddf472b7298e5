package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/dsync"
)

func newDsyncCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dsync",
		Short: "Inspect the locks, semaphores and elections of dsync on a NATS server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError{errors.New("dsync needs a subcommand: ls")}
		},
	}
	cmd.AddCommand(newDsyncLsCmd())
	return cmd
}

func newDsyncLsCmd() *cobra.Command {
	var (
		asJSON    bool
		namespace string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ls ADDR [--namespace NS] [--json]",
		Short: "List held locks, semaphore permits and election candidacies",
		Long: `ls lists what dsync clients hold on the NATS server or cluster at ADDR
(nats://host:port, several comma-separated): each lock, semaphore permit and
election candidacy with its holder, fencing token (the term, for an election;
the leader is marked) and when the server expires it unless it is renewed.
Every namespace is listed unless --namespace is given. Nothing is taken or
changed, and no bucket is created.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			hs, err := dsync.Inspect(ctx, args[0], namespace)
			if err != nil {
				return err
			}
			if hs == nil {
				hs = []dsync.Holding{}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, struct {
					Holdings []dsync.Holding `json:"holdings"`
				}{hs})
			}
			if len(hs) == 0 {
				fmt.Fprintln(out, "nothing held")
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tPERMIT\tHOLDER\tTOKEN\tEXPIRES IN\tLEADER")
			for _, h := range hs {
				if h.Err != "" {
					fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\terror: %s\n", h.Namespace, h.KindName, h.Name, h.Err)
					continue
				}
				permit, leader := "-", "-"
				if h.Permit >= 0 {
					permit = strconv.Itoa(h.Permit) + "/" + strconv.Itoa(h.Size)
				}
				if h.Kind == dsync.KindElection {
					leader = yesNo(h.Leader)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.Namespace, h.KindName, h.Name, permit,
					h.Holder, h.Token, h.Expires.Sub(now).Round(100*time.Millisecond), leader)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.StringVar(&namespace, "namespace", "", "list only this namespace")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	return cmd
}
