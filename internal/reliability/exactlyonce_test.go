package reliability_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/mockmanager"
)

// Two runners on one manager run each task once. They race for the same tasks; the one that
// loses an acquire hears 409, logs it at debug level and moves on: a conflict is no error.
func TestTwoRunnersRunEachTaskOnce(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	envA, envB := managerSettings(t, mm, mm.URL), managerSettings(t, mm, mm.URL)
	envA["DLITE_LOG_LEVEL"] = "debug"
	envA["DLITE_NAME"], envB["DLITE_NAME"] = "runner-a", "runner-b"
	a, b := startRunner(t, "a", envA), startRunner(t, "b", envB)
	logged(t, a, "registered with the manager")
	logged(t, b, "registered with the manager")

	var ids []string
	for i := range 80 {
		if i%10 == 0 {
			ids = append(ids, enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": fmt.Sprintf("echo %d", i)}))
			continue
		}
		ids = append(ids, enqueue(t, mm, "SLEEP_TASK", sleepTask(i%30)))
	}
	delegateA := deref(registeredID(t, a))
	for _, id := range ids {
		waitDone(t, mm, id)
	}
	eventually(t, "every task to be logged finished", func() bool {
		return count(a, "task finished", "")+count(b, "task finished", "") == len(ids)
	})
	// Stopped, the runners make no more acquires: what the manager recorded is final.
	require.NoError(t, a.Stop(waitFor))
	require.NoError(t, b.Stop(waitFor))
	conflictsOfA := 0
	for _, id := range ids {
		st, err := mm.Task(id)
		require.NoError(t, err)
		require.Len(t, st.Responses, 1, "task %s answered once", id)
		require.Equal(t, "OK", st.Responses[0].Code)
		require.Equal(t, 1, st.Acquisitions, "task %s acquired once", id)
		for _, at := range st.AcquireAttempts {
			if !at.Granted && at.DelegateId == delegateA {
				conflictsOfA++
			}
		}
	}
	for _, id := range ids {
		requireStartedOnce(t, id, a, b)
	}
	t.Logf("runner a lost %d acquires to runner b", conflictsOfA)
	lost := func() int { return len(chaos.Find(chaos.Records(a.Output()), "task taken by another runner")) }
	// The runner's output reaches the test through a pipe and may lag behind the manager's record.
	eventually(t, "each lost acquire to be read from runner a's output", func() bool { return lost() >= conflictsOfA })
	require.Equal(t, conflictsOfA, lost(), "each lost acquire is logged once")
	for _, p := range []*chaos.Process{a, b} {
		for _, r := range chaos.Records(p.Output()) {
			if r.Msg == "task taken by another runner" {
				require.Equal(t, "DEBUG", r.Level)
			}
			require.NotEqual(t, "ERROR", r.Level, "%s: %s", p.Name, r.Line)
			require.NotEqual(t, "acquire failed", r.Msg, "%s: %s", p.Name, r.Line)
		}
	}
}

// registeredID returns the delegate id of the runner's first registration.
func registeredID(t *testing.T, p *chaos.Process) *string {
	t.Helper()
	rec := logged(t, p, "registered with the manager")
	i := strings.Index(rec.Line, `"delegate_id":"`)
	require.GreaterOrEqual(t, i, 0)
	rest := rec.Line[i+len(`"delegate_id":"`):]
	id := rest[:strings.IndexByte(rest, '"')]
	return &id
}

// An event the manager repeats (for a task that runs here, or ran here already) never starts a
// second run: the runner does not even try to acquire it again.
func TestRepeatedEventsNeverStartASecondRun(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	proxy := newProxy(t, mm.URL)
	runner := startRunner(t, "runner", managerSettings(t, mm, proxy.URL()))

	done := enqueue(t, mm, "SLEEP_TASK", sleepTask(0))
	waitDone(t, mm, done)
	running := enqueue(t, mm, "SLEEP_TASK", sleepTask(2000))
	waitState(t, mm, running, mockmanager.StateAcquired)

	var mu sync.Mutex
	repeated := 0
	proxy.SetRewrite(func(op chaos.Op, body []byte) []byte {
		if op != chaos.OpPoll {
			return body
		}
		mu.Lock()
		defer mu.Unlock()
		repeated++
		var events []string
		for _, id := range []string{done, running, done, running} {
			events = append(events, fmt.Sprintf(`{"eventType":"DelegateTaskEvent","delegateTaskId":%q,"taskType":"SLEEP_TASK","sync":false}`, id))
		}
		return chaos.InjectEvents(body, events...)
	})
	eventually(t, "twenty polls repeating both events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return repeated >= 20
	})
	waitDone(t, mm, running)
	eventually(t, "more polls after the running task finished", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return repeated >= 40
	})
	proxy.SetRewrite(nil)

	for _, id := range []string{done, running} {
		st, err := mm.Task(id)
		require.NoError(t, err)
		require.Len(t, st.AcquireAttempts, 1, "task %s acquired with one call, never again", id)
		require.Len(t, st.Responses, 1)
		requireStartedOnce(t, id, runner)
	}
}

// A lost acquire answer is asked again, and the manager hands the task again to its holder: one
// run. A lost report answer is sent again: the manager hears the same result twice (a duplicate
// delivery, which it must take as a repeat), still from one run.
func TestLostAnswersAreAskedAgainNotRunAgain(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	proxy := newProxy(t, mm.URL)
	runner := startRunner(t, "runner", managerSettings(t, mm, proxy.URL()))
	logged(t, runner, "registered with the manager")

	proxy.LoseNext(chaos.OpAcquire, 1)
	acquired := enqueue(t, mm, "SLEEP_TASK", sleepTask(0))
	st := waitDone(t, mm, acquired)
	require.Equal(t, 1, st.Acquisitions)
	require.Len(t, st.AcquireAttempts, 2, "asked twice")
	require.True(t, st.AcquireAttempts[0].Granted && st.AcquireAttempts[1].Granted, "granted both times, to the same delegate")
	require.Len(t, st.Responses, 1)
	requireStartedOnce(t, acquired, runner)

	proxy.LoseNext(chaos.OpReport, 1)
	reported := enqueue(t, mm, "SLEEP_TASK", sleepTask(0), runnerResponse)
	eventually(t, "the result to be sent again", func() bool {
		s, err := mm.Task(reported)
		return err == nil && len(s.Responses) == 2
	})
	st, err := mm.Task(reported)
	require.NoError(t, err)
	require.Equal(t, deref(st.Responses[0].DelegateId), deref(st.Responses[1].DelegateId), "one delegate, one run")
	requireStartedOnce(t, reported, runner)
}
