package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dlite-dev/dlite"
)

// runCommand runs `dlite run`: the runner against the configured manager, or the demonstration on
// an embedded mock manager when none is configured. The first SIGINT or SIGTERM stops taking work
// and drains running tasks within DLITE_SHUTDOWN_GRACE; a second one cancels them at once.
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := dlite.LoadConfig(args, os.LookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dlite run: %v\n", err)
		return 2
	}
	logger := cfg.NewLogger(stderr)
	if err := harden(); err != nil {
		logger.Warn("could not keep the runner's environment from the tasks it runs", "err", err)
	}
	if cfg.Embedded() {
		if cfg.Demo == dlite.DemoDrone {
			return droneDemo(ctx, cfg, logger, stdout, stderr)
		}
		return demo(ctx, cfg, logger, stdout, stderr)
	}
	r, err := dlite.New(dlite.Options{Config: cfg, TaskServers: []dlite.TaskServer{dlite.BuiltinTasks()}, CITasks: true, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "dlite run: %v\n", err)
		return 2
	}
	if err := dlite.RunWithSignals(ctx, r, cfg.ShutdownGrace); err != nil {
		logger.Error("runner failed", "err", err)
		return 1
	}
	return 0
}
