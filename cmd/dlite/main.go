// Command dlite is a task runner for the Harness manager: it registers, polls for tasks, runs them
// in a bounded pool of typed handlers and reports every result. `dlite run` with no manager
// configured runs a demonstration against an embedded mock manager.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one `dlite <name>` subcommand; it returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"run":          {"register with the manager and run tasks (a demo on an embedded mock manager when none is configured)", runCommand},
	"mock-manager": {"serve a mock Harness manager for local tries and tests", withSignals(mockManagerCommand)},
	"mock-drone":   {"serve a mock Drone server (runner RPC v2) for local tries and tests", withSignals(mockDroneCommand)},
	"version":      {"print the version and commit", versionCommand},
}

// order lists the subcommands in help output.
var order = []string{"run", "mock-manager", "mock-drone", "version"}

func main() {
	os.Exit(dispatch(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dlite: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: dlite <command> [flags]\n\nCommands:")
	for _, name := range order {
		fmt.Fprintf(w, "  %-13s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'dlite <command> --help' for the flags of a command.")
}

// withSignals runs a command whose context ends at the first SIGINT or SIGTERM.
func withSignals(run func(context.Context, []string, io.Writer, io.Writer) int) func(context.Context, []string, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		return run(ctx, args, stdout, stderr)
	}
}
