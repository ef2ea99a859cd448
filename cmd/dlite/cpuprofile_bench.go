//go:build benchprofile

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// A dlite built with -tags benchprofile writes a CPU profile of `dlite run` to the file named by
// DLITE_BENCH_CPUPROFILE, for `dlite-bench run --profile-dir`. Release builds have no such hook.
func init() {
	run := commands["run"]
	inner := run.run
	run.run = func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		path := os.Getenv("DLITE_BENCH_CPUPROFILE")
		if path == "" {
			return inner(ctx, args, stdout, stderr)
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(stderr, "dlite: DLITE_BENCH_CPUPROFILE: %v\n", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "dlite: DLITE_BENCH_CPUPROFILE: %v\n", err)
			return 1
		}
		code := inner(ctx, args, stdout, stderr)
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "dlite: DLITE_BENCH_CPUPROFILE: %v\n", err)
		}
		return code
	}
	commands["run"] = run
}
