package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

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
	if cfg.Embedded() {
		return demo(ctx, cfg, logger, stdout, stderr)
	}
	r, err := dlite.New(dlite.Options{Config: cfg, TaskServers: []dlite.TaskServer{dlite.BuiltinTasks()}, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "dlite run: %v\n", err)
		return 2
	}
	stop := drainOnSignal(r, cfg, logger)
	defer stop()
	if err := r.Run(ctx); err != nil {
		logger.Error("runner failed", "err", err)
		return 1
	}
	return 0
}

// drainOnSignal shuts the runner down gracefully at the first SIGINT or SIGTERM and cuts the
// grace period short at the second. The returned function stops listening.
func drainOnSignal(r *dlite.Runner, cfg *dlite.Config, logger *slog.Logger) (stop func()) {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var sig os.Signal
		select {
		case sig = <-signals:
		case <-done:
			return
		}
		logger.Info("stop signal received: taking no more work, draining running tasks",
			"signal", sig.String(), "grace", cfg.ShutdownGrace, "hint", "send the signal again to cancel running tasks now")
		grace, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer cancel()
		go func() {
			select {
			case sig := <-signals:
				logger.Warn("second stop signal: cancelling running tasks", "signal", sig.String())
				cancel()
			case <-grace.Done():
			case <-done:
			}
		}()
		_ = r.Shutdown(grace)
	}()
	return func() {
		signal.Stop(signals)
		close(done)
	}
}
