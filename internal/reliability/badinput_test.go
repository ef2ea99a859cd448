package reliability_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/mockmanager"
)

// Task data larger than DLITE_MAX_TASK_DATA_BYTES fails with a message that says so, on either
// result endpoint, and the task never runs.
func TestOversizedTaskDataFails(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	env := managerSettings(t, mm, mm.URL)
	env["DLITE_MAX_TASK_DATA_BYTES"] = "1024"
	runner := startRunner(t, "runner", env)
	marker := filepath.Join(t.TempDir(), "ran")
	script := "touch " + marker + "\n# " + strings.Repeat("x", 4096)

	legacy := enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": script})
	viaRunner := enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": script}, runnerResponse)
	small := enqueue(t, mm, "SLEEP_TASK", sleepTask(0))
	for _, id := range []string{legacy, viaRunner} {
		st := waitDone(t, mm, id)
		require.Len(t, st.Responses, 1)
		require.Equal(t, "FAILED", st.Responses[0].Code)
		require.Contains(t, deref(st.Responses[0].Error), "more than the limit of 1024 bytes")
	}
	require.Equal(t, "OK", waitDone(t, mm, small).Responses[0].Code, "data under the limit runs")
	require.NoFileExists(t, marker, "an oversized task never runs")
	eventually(t, "the runner to log all three tasks finished", func() bool { return count(runner, "task finished", "") == 3 })
}

// Malformed answers from the manager (an undecodable task-events body, events the runner cannot
// use next to good ones, an undecodable acquire answer) are logged and skipped; the runner goes
// on, and every real task still runs once and is answered once.
func TestMalformedManagerAnswersAreSkipped(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	proxy := newProxy(t, mm.URL)
	var mu sync.Mutex
	garbledPolls, garbledAcquires := 0, 0
	proxy.SetRewrite(func(op chaos.Op, body []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case op == chaos.OpPoll && garbledPolls < 3:
			garbledPolls++
			return body[:len(body)/2] // cut short: not JSON
		case op == chaos.OpPoll:
			// Events the runner cannot use, before the real ones.
			return chaos.InjectEvents(body, `"not an event"`, `{"eventType":"SomethingElse","delegateTaskId":"x-1"}`,
				`{"delegateTaskId":42}`, `{"eventType":"DelegateTaskEvent"}`,
				`{"eventType":"DelegateTaskEvent","delegateTaskId":"","taskType":7}`)
		case op == chaos.OpAcquire && garbledAcquires < 2:
			garbledAcquires++
			if garbledAcquires == 1 {
				return []byte(`{"id":"` + strings.Repeat("{", 10)) // not JSON
			}
			return []byte(`{"async":true}`) // JSON, but no task id or type
		}
		return body
	})
	runner := startRunner(t, "runner", managerSettings(t, mm, proxy.URL()))

	ids := []string{
		enqueue(t, mm, "SLEEP_TASK", sleepTask(0)),
		enqueue(t, mm, "SLEEP_TASK", sleepTask(10), runnerResponse),
		enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": "echo fine"}),
	}
	for _, id := range ids {
		st := waitDone(t, mm, id)
		require.Len(t, st.Responses, 1, "task %s", id)
		require.Equal(t, "OK", st.Responses[0].Code)
		requireStartedOnce(t, id, runner)
	}
	mu.Lock()
	require.Equal(t, 3, garbledPolls)
	require.Equal(t, 2, garbledAcquires)
	mu.Unlock()
	recs := chaos.Records(runner.Output())
	require.NotEmpty(t, chaos.Find(recs, "poll failed; backing off"), "an undecodable events body is logged")
	require.GreaterOrEqual(t, len(chaos.Find(recs, "skipping a task event the runner cannot use")), 5, "each unusable event is logged")
	require.NotContains(t, string(runner.Output()), "panic")
	select {
	case <-runner.Done():
		t.Fatalf("the runner exited: %v", runner.Err())
	default:
	}
}
