// Command textops is a dlite runner with two task types of its own, HASH_TASK and RENDER_TASK,
// specified in openapi/tasks.yaml. It takes the same settings as `dlite run` (run it with --help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/dlite-dev/dlite"

	"example.com/textops/handlers"
)

func main() {
	cfg, err := dlite.LoadConfig(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "textops:", err)
		os.Exit(2)
	}
	r, err := newRunner(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "textops:", err)
		os.Exit(2)
	}
	// The first SIGINT/SIGTERM drains running tasks within DLITE_SHUTDOWN_GRACE; a second cancels them.
	if err := dlite.RunWithSignals(context.Background(), r, cfg.ShutdownGrace); err != nil {
		fmt.Fprintln(os.Stderr, "textops:", err)
		os.Exit(1)
	}
}

// newRunner builds the runner from its configuration: the textops task types and nothing else.
func newRunner(cfg *dlite.Config) (*dlite.Runner, error) {
	return dlite.New(dlite.Options{
		Config:      cfg,
		TaskServers: []dlite.TaskServer{handlers.TaskServer(&handlers.Handlers{})},
	})
}
