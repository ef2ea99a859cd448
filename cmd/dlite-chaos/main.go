// Command dlite-chaos runs the chaos suite: real dlite runner processes against a mock manager
// that fails, resets and loses calls, with one runner killed and restarted midway. It prints what
// it found and exits 1 unless no task was lost and none was executed twice. Flags add scenarios:
// acquire answers lost for a while, a manager that restarts having forgotten every runner.
//
//	dlite-chaos -tasks 2000 -binary bin/dlite
//	dlite-chaos -tasks 300 -lose-acquires-for 65s -restart-at 0.6
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/dlite-dev/dlite/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg chaos.Config
	tasks := 2000
	if v, err := strconv.Atoi(os.Getenv("CHAOS_TASKS")); err == nil && v > 0 {
		tasks = v
	}
	fs.IntVar(&cfg.Tasks, "tasks", tasks, "tasks to submit; $CHAOS_TASKS sets the default")
	fs.StringVar(&cfg.Binary, "binary", "", "the dlite binary to run; built from source when empty")
	fs.BoolVar(&cfg.Race, "race", false, "build the binary with the race detector (without -binary)")
	fs.IntVar(&cfg.Runners, "runners", 2, "runner processes")
	fs.IntVar(&cfg.Workers, "workers", 16, "parallel workers per runner")
	fs.Float64Var(&cfg.ShellShare, "shell-share", 0.05, "share of SHELL_SCRIPT_TASKs (0: none)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0.2, "share of manager calls answered 503 (0: none)")
	fs.Float64Var(&cfg.ResetRate, "reset-rate", 0.1, "share of manager calls whose connection is reset (0: none)")
	fs.DurationVar(&cfg.MaxLatency, "max-latency", 100*time.Millisecond, "upper bound of the random delay of each manager call (0: none)")
	fs.Float64Var(&cfg.LostAnswers, "lost-answers", 0.02, "share of manager calls acted on whose answer is lost (0: none)")
	fs.DurationVar(&cfg.DelegateTimeout, "delegate-timeout", 8*time.Second, "how long the manager waits for a silent delegate before re-queueing its tasks")
	fs.Float64Var(&cfg.KillAt, "kill-at", 0.5, "share of tasks submitted when the first runner is killed (0: no kill)")
	fs.DurationVar(&cfg.LoseAcquiresFor, "lose-acquires-for", 0, "lose every acquire answer for this long (0: never)")
	fs.Float64Var(&cfg.LoseAcquiresAt, "lose-acquires-at", 0.3, "share of tasks submitted when acquire answers start being lost")
	fs.Float64Var(&cfg.RestartAt, "restart-at", 0, "share of tasks submitted when the manager restarts, forgetting every runner (0: no restart)")
	fs.DurationVar(&cfg.RestartDown, "restart-down", 3*time.Second, "how long the restarting manager is unreachable")
	fs.DurationVar(&cfg.Deadline, "deadline", 5*time.Minute, "bound of the whole run")
	fs.IntVar(&cfg.SubmitRate, "rate", 150, "tasks submitted per second")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "the runners' log level (their logs are kept in the work directory)")
	workDir := fs.String("workdir", "", "directory for spools and runner logs (a temporary one, removed after a passing run, when empty)")
	quiet := fs.Bool("quiet", false, "print only the figures, no progress")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dlite-chaos: unexpected arguments %q\n", fs.Args())
		return 2
	}
	// On the command line 0 means none; in chaos.Config it means the default.
	for _, v := range []*float64{&cfg.ShellShare, &cfg.ErrorRate, &cfg.ResetRate, &cfg.LostAnswers, &cfg.KillAt} {
		if *v == 0 {
			*v = -1
		}
	}
	if cfg.MaxLatency == 0 {
		cfg.MaxLatency = -1
	}
	cfg.WorkDir = *workDir
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "dlite-chaos-")
		if err != nil {
			fmt.Fprintf(stderr, "dlite-chaos: %v\n", err)
			return 1
		}
		cfg.WorkDir = dir
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dlite-chaos: %v\n", err)
		return 1
	}
	rep.Print(stdout)
	if !rep.OK() {
		fmt.Fprintf(stderr, "dlite-chaos: runner logs and spools kept in %s\n", cfg.WorkDir)
		return 1
	}
	if *workDir == "" {
		_ = os.RemoveAll(cfg.WorkDir)
	}
	return 0
}
