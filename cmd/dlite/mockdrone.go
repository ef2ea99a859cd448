package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/mockmanager"
)

// defaultMockDroneAddr keeps the mock Drone server, whose admin API has no authentication, on
// loopback unless asked otherwise.
const defaultMockDroneAddr = "127.0.0.1:8086"

// mockDroneCommand runs `dlite mock-drone`: a mock Drone server for trying a Drone runner locally
// and for end-to-end tests. It serves until ctx ends and returns the process exit code: 0 after a
// clean stop, 1 when serving fails, 2 for bad flags or settings.
func mockDroneCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite mock-drone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dlite mock-drone [flags]\n\n"+
			"Serves a mock Drone server: the runner RPC v2 under /rpc/v2, and its admin API under\n"+
			"/admin/drone. Runners must send the secret from DRONE_RPC_SECRET; without one, the\n"+
			"server refuses every runner with 403, as a real Drone server does.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", defaultMockDroneAddr,
		"address to listen on; port 0 picks a free port. The admin API has no authentication: keep it on loopback")
	pollTimeout := fs.Duration("poll-timeout", mockmanager.DefaultDronePollTimeout,
		"how long the stage request and build watch long polls wait before answering 204")
	cancelRecheck := fs.Duration("cancel-recheck", mockmanager.DefaultDroneCancelRecheck,
		"how often a build watch looks for a cancel made before it was opened; above --poll-timeout such a cancel is never delivered, as on a real server")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "dlite mock-drone: "+format+"\n", args...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	logger, err := newMockManagerLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return fail("%v", err)
	}
	for name, d := range map[string]time.Duration{"--poll-timeout": *pollTimeout, "--cancel-recheck": *cancelRecheck} {
		if d <= 0 {
			return fail("%s must be positive, got %s", name, d)
		}
	}
	secret := os.Getenv("DRONE_RPC_SECRET")
	if secret == "" {
		logger.Warn("DRONE_RPC_SECRET is empty: every runner will be refused with 403")
	}
	ds, err := mockmanager.NewDrone(mockmanager.DroneOptions{
		Secret:        secret,
		Logger:        logger,
		PollTimeout:   *pollTimeout,
		CancelRecheck: *cancelRecheck,
	})
	if err != nil {
		return fail("%v", err)
	}
	err = ds.ListenAndServe(ctx, *addr, func(url string) {
		fmt.Fprintf(stdout, "mock Drone server listening on %s (admin API at %s/admin/drone)\n", url, url)
	})
	if err != nil {
		fmt.Fprintf(stderr, "dlite mock-drone: %v\n", err)
		return 1
	}
	return 0
}
