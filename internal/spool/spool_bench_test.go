package spool_test

import (
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/spool"
)

// benchResult is the result of a no-op SLEEP_TASK, the smallest a runner reports.
func benchResult(id string) manager.Result {
	return manager.Result{TaskID: id, TaskType: "SLEEP_TASK", DelegateID: "delegate-0123456789abcdef",
		Endpoint: manager.EndpointLegacy, Code: manager.CodeOK, Data: json.RawMessage(`{"sleptMilliseconds":0}`),
		FinishedAt: time.Now()}
}

// BenchmarkPutRemove stores and removes one result at a time: the durable-delivery cost of a task
// when results come one by one.
func BenchmarkPutRemove(b *testing.B) {
	s, err := spool.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		key, err := s.Put(benchResult("task-"+strconv.Itoa(i)), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Remove(key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutRemoveParallel stores and removes results from many goroutines at once, as the
// slots of a busy runner do.
func BenchmarkPutRemoveParallel(b *testing.B) {
	s, err := spool.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key, err := s.Put(benchResult("task-"+strconv.FormatInt(n.Add(1), 10)), time.Now())
			if err != nil {
				b.Error(err)
				return
			}
			if err := s.Remove(key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
