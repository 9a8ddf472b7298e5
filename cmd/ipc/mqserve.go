package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipcgo/ipc/internal/natsserver"
)

// serveJSON is what `mq serve --json` prints once the server accepts
// clients.
type serveJSON struct {
	URL   string `json:"url"`
	Store string `json:"store"`
	Sync  string `json:"sync"`
}

func newMQServeCmd() *cobra.Command {
	var (
		store, listen, syncFlag string
		asJSON, logs            bool
	)
	cmd := &cobra.Command{
		Use:   "serve --store DIR [--listen 127.0.0.1:4222] [--sync always|INTERVAL]",
		Short: "Run an embedded NATS server with JetStream",
		Long: `serve runs a NATS server with JetStream (the real nats-server, embedded) with
its store in DIR, listening on loopback by default, and prints its URL once
it accepts clients. It runs until SIGINT or SIGTERM. --sync always makes
JetStream fsync each write before acknowledging it; --sync INTERVAL (e.g.
1s) syncs at that interval; the default is the server's own (2 minutes).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if store == "" {
				return usageError{fmt.Errorf("--store DIR is required")}
			}
			abs, err := filepath.Abs(store)
			if err != nil {
				return err
			}
			host, portStr, err := net.SplitHostPort(listen)
			port, perr := strconv.Atoi(portStr)
			if err != nil || perr != nil || port < 0 || port > 65535 {
				return usageError{fmt.Errorf("bad --listen %q: want HOST:PORT", listen)}
			}
			cfg := natsserver.Config{Host: host, Port: port, StoreDir: abs, Logs: logs}
			syncWord := "server default (2m)"
			switch s := strings.TrimSpace(syncFlag); s {
			case "", "default":
			case "always":
				cfg.SyncAlways, syncWord = true, "always"
			default:
				d, err := time.ParseDuration(s)
				if err != nil || d <= 0 {
					return usageError{fmt.Errorf("bad --sync %q: want always or a positive interval, e.g. 1s", syncFlag)}
				}
				cfg.SyncInterval, syncWord = d, "every "+d.String()
			}
			if port == 0 {
				cfg.Port = -1
			}
			if err := os.MkdirAll(abs, 0o700); err != nil {
				return err
			}
			s, err := natsserver.Start(cfg)
			if err != nil {
				return err
			}
			defer s.Stop()
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, serveJSON{URL: s.URL(), Store: abs, Sync: syncWord}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "%s\n", s.URL())
				fmt.Fprintf(cmd.ErrOrStderr(), "JetStream store %s, sync %s; stop with Ctrl-C\n", abs, syncWord)
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&store, "store", "", "JetStream store `DIR` (created 0700)")
	f.StringVar(&listen, "listen", "127.0.0.1:4222", "client `HOST:PORT` (port 0: any free port)")
	f.StringVar(&syncFlag, "sync", "", "always, or a sync `INTERVAL` (default: the server's, 2m)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&logs, "logs", false, "print the server's log on stderr")
	return cmd
}
