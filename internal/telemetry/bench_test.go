package telemetry_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/telemetry"
)

// BenchmarkTaskObservers measures what observing costs each task: its start and its finish, from
// many goroutines at once as the executor's slots call them.
func BenchmarkTaskObservers(b *testing.B) {
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{TaskTypes: []string{"SLEEP_TASK"}})
	res := manager.Result{Code: manager.CodeOK}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			task := executor.RunningTask{ID: strconv.Itoa(i), Type: "SLEEP_TASK", StartedAt: time.Time{}}
			rec.TaskStarted(task)
			rec.TaskFinished(task, res, time.Millisecond)
		}
	})
}
