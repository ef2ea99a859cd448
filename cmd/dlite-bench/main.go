// Command dlite-bench measures a dlite binary against a mock manager on loopback and prints a
// table and a JSON report: throughput, dispatch latency and CPU per task of no-op tasks, memory
// with many sleeping tasks and when idle, each next to a floor client that makes the same calls.
//
//	dlite-bench run --dlite bin/dlite [--json bench.json]
//
// The mock, floor and pin commands are the processes the run starts; they are not meant to be
// run by hand.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dlite-dev/dlite/internal/bench"
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: dlite-bench run|mock|floor|pin [flags]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdout, stderr)
	case "mock":
		return mockCommand(ctx, args[1:], stdout, stderr)
	case "floor":
		return floorCommand(ctx, args[1:], stderr)
	case "pin":
		return pinCommand(args[1:], stderr)
	default:
		fmt.Fprintf(stderr, "dlite-bench: unknown command %q\n", args[0])
		return 2
	}
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite-bench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dlite := fs.String("dlite", "bin/dlite", "the dlite binary to measure")
	jsonPath := fs.String("json", "bench.json", "write the JSON report to this file too; empty writes it to standard output only")
	tasks := fs.Int("tasks", 2000, "no-op tasks pre-enqueued per throughput run with capped answers")
	workers := fs.String("workers", "1,16,128", "comma-separated DLITE_PARALLEL_WORKERS of the throughput runs")
	interval := fs.Duration("interval", 100*time.Millisecond, "DLITE_POLL_INTERVAL_MILLISECS")
	repeat := fs.Int("repeat", 1, "runs of each throughput measurement; the report shows the medians")
	paced := fs.Int("paced", 200, "tasks enqueued one by one per latency run")
	rate := fs.Float64("paced-rate", 40, "average paced enqueues per second")
	sleepers := fs.Int("sleepers", 10000, "tasks asleep at once in the memory run; 0 skips it")
	sleepFor := fs.Duration("sleep", 60*time.Second, "how long each of those tasks sleeps")
	settle := fs.Duration("settle", 2*time.Second, "wait before measuring a steady state")
	window := fs.Duration("window", 5*time.Second, "how long a steady state is measured")
	maxEvents := fs.Int("max-events", 128, "events per task-events answer of the mock manager (0: its default of 1000)")
	backlogs := fs.String("backlogs", "10000,20000", "comma-separated queue lengths of the backlog runs, whose polls are answered with the whole queue; empty skips them")
	backlogWorkers := fs.String("backlog-workers", "16,128", "comma-separated DLITE_PARALLEL_WORKERS of the backlog runs")
	backlogTasks := fs.Int("backlog-tasks", 2000, "results measured per backlog run")
	long := fs.Bool("long", false, "the long run: --repeat 3 --tasks 4000 --backlog-tasks 4000 --tmpfs /dev/shm, unless given")
	dliteEnv := fs.String("dlite-env", "", "comma-separated KEY=VALUE settings added to every dlite run, e.g. DLITE_SPOOL_SYNC_DELAY=0")
	profileDir := fs.String("profile-dir", "", "have each dlite run write a CPU profile to this directory (needs a dlite built with -tags benchprofile)")
	pin := fs.Bool("pin", false, "run the mock manager on CPU 0 and the runner or floor on CPU 1")
	dir := fs.String("dir", "", "keep every process's logs in this directory (default: a temporary one, removed)")
	skip := fs.String("skip", "", "comma-separated measurements to leave out: idle, throughput")
	tmpfs := fs.String("tmpfs", "", "a tmpfs directory (/dev/shm): dlite is measured a second time with its spool there, telling what durable results cost; empty skips that")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *long {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, value := range map[string]string{"repeat": "3", "tasks": "4000", "backlog-tasks": "4000", "tmpfs": "/dev/shm"} {
			if !given[name] {
				_ = fs.Set(name, value)
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dlite-bench: %v\n", err)
		return 1
	}
	var skipped []string
	for f := range strings.SplitSeq(*skip, ",") {
		switch f = strings.TrimSpace(f); f {
		case "":
		case "idle", "throughput":
			skipped = append(skipped, f)
		default:
			fmt.Fprintf(stderr, "dlite-bench: --skip: %q is not idle or throughput\n", f)
			return 2
		}
	}
	tmpfsDir := ""
	if *tmpfs != "" {
		if st, err := os.Stat(*tmpfs); err == nil && st.IsDir() {
			if tmpfsDir, err = os.MkdirTemp(*tmpfs, "dlite-bench-"); err != nil {
				fmt.Fprintf(stderr, "dlite-bench: --tmpfs: %v\n", err)
				return 1
			}
			defer os.RemoveAll(tmpfsDir)
		}
	}
	ws, ok := positives("workers", *workers, stderr)
	bs, ok2 := positives("backlogs", *backlogs, stderr)
	bws, ok3 := positives("backlog-workers", *backlogWorkers, stderr)
	if !ok || !ok2 || !ok3 {
		return 2
	}
	rep, err := bench.Run(ctx, bench.Options{
		Dlite: *dlite, Self: self, Tasks: *tasks, Repeat: *repeat, Workers: ws, Interval: *interval,
		Paced: *paced, PacedRate: *rate, Sleepers: *sleepers, SleepFor: *sleepFor,
		Settle: *settle, Window: *window, MaxEventsPerPoll: *maxEvents, Pin: *pin, Dir: *dir,
		Backlogs: bs, BacklogWorkers: bws, BacklogTasks: *backlogTasks, ProfileDir: *profileDir, DliteEnv: settingsList(*dliteEnv),
		TmpfsDir: tmpfsDir, Progress: stderr,
		SkipIdle: slices.Contains(skipped, "idle"), SkipThroughput: slices.Contains(skipped, "throughput"),
	})
	if err != nil {
		fmt.Fprintf(stderr, "dlite-bench: %v\n", err)
		return 1
	}
	if err := rep.WriteTable(stdout); err != nil {
		return 1
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "dlite-bench: %v\n", err)
		return 1
	}
	out = append(out, '\n')
	fmt.Fprintln(stdout)
	_, _ = stdout.Write(out)
	if *jsonPath != "" {
		if err := os.WriteFile(*jsonPath, out, 0o644); err != nil {
			fmt.Fprintf(stderr, "dlite-bench: %v\n", err)
			return 1
		}
	}
	return 0
}

// settingsList splits a comma-separated list of KEY=VALUE settings.
func settingsList(list string) []string {
	var out []string
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// positives parses a comma-separated list of positive numbers; an empty list is none.
func positives(name, list string, stderr io.Writer) ([]int, bool) {
	var out []int
	if strings.TrimSpace(list) == "" {
		return nil, true
	}
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "dlite-bench: --%s: %q is not a positive number\n", name, f)
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func mockCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite-bench mock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	maxEvents := fs.Int("max-events", 0, "events per task-events answer (0: the mock's default)")
	prefill := fs.Int("prefill", 0, "SLEEP_TASKs queued before listening")
	prefillMillis := fs.Int64("prefill-millis", 0, "how long each of them sleeps")
	uncapped := fs.Bool("uncapped", false, "answer every poll with all the prefilled tasks not yet acquired")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	err := bench.ServeMock(ctx, bench.MockOptions{
		Addr: *addr, AccountID: os.Getenv("DLITE_ACCOUNT_ID"), Secret: os.Getenv("DLITE_ACCOUNT_SECRET"),
		MaxEventsPerPoll: *maxEvents, Prefill: *prefill, PrefillMillis: *prefillMillis, Uncapped: *uncapped,
	}, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "dlite-bench mock: %v\n", err)
		return 1
	}
	return 0
}

func floorCommand(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite-bench floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "", "the manager's base URL")
	workers := fs.Int("workers", 1, "tasks run at once")
	interval := fs.Duration("interval", 100*time.Millisecond, "wait between polls that find nothing")
	starts := fs.String("starts", "", "write when each task started to this file at the end")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	err := bench.RunFloor(ctx, bench.FloorOptions{
		Endpoint: *endpoint, AccountID: os.Getenv("DLITE_ACCOUNT_ID"), Secret: os.Getenv("DLITE_ACCOUNT_SECRET"),
		Workers: *workers, Interval: *interval, StartsFile: *starts,
	})
	if err != nil {
		fmt.Fprintf(stderr, "dlite-bench floor: %v\n", err)
		return 1
	}
	return 0
}

func pinCommand(args []string, stderr io.Writer) int {
	if len(args) < 3 || args[1] != "--" {
		fmt.Fprintln(stderr, "usage: dlite-bench pin CPU -- COMMAND [ARGS]")
		return 2
	}
	cpu, err := strconv.Atoi(args[0])
	if err != nil || cpu < 0 {
		fmt.Fprintf(stderr, "dlite-bench pin: %q is not a CPU number\n", args[0])
		return 2
	}
	err = bench.Pin(cpu, args[2:])
	fmt.Fprintf(stderr, "dlite-bench pin: %v\n", err)
	return 1
}
