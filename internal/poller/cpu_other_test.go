//go:build !unix

package poller

import "time"

// cpuTime is not measured here: the benchmarks report 0 CPU time per task.
func cpuTime() time.Duration { return 0 }
