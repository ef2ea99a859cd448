package reliability_test

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/mockmanager"
)

// pollsDuring counts the polls that reach the proxy while wait runs.
func pollsDuring(p *chaos.Proxy, wait func()) int {
	before := p.Seen(chaos.OpPoll)
	wait()
	return p.Seen(chaos.OpPoll) - before
}

// Through an outage (first unreachable, then answering 503) the runner finishes the tasks it
// holds and keeps their results, polls less and less often, and afterwards delivers the results
// and takes new work without a restart: under the same registration when the manager still
// knows it, under a new one when the manager forgot it meanwhile.
func TestOutage(t *testing.T) {
	t.Parallel()
	for _, forgotten := range []bool{false, true} {
		name := "manager remembers the runner"
		if forgotten {
			name = "manager forgot the runner"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mm := newManager(t, mockmanager.Options{})
			proxy := newProxy(t, mm.URL)
			env := managerSettings(t, mm, proxy.URL())
			runner := startRunner(t, "runner", env)

			held := []string{
				enqueue(t, mm, "SLEEP_TASK", sleepTask(2500)),
				enqueue(t, mm, "SLEEP_TASK", sleepTask(2500), runnerResponse),
			}
			first := ""
			for _, id := range held {
				first = deref(waitState(t, mm, id, mockmanager.StateAcquired).AcquiredBy)
			}
			eventually(t, "both tasks to start", func() bool { return count(runner, "task started", "") == 2 })

			// A second of normal polling, for comparison.
			normal := pollsDuring(proxy, func() { time.Sleep(time.Second) })

			proxy.SetMode(chaos.Reset)
			if forgotten {
				delegate := first
				require.NoError(t, mm.DeleteDelegate(delegate))
			}
			unreachable := pollsDuring(proxy, func() { time.Sleep(3 * time.Second) })
			proxy.SetRefusal(http.StatusServiceUnavailable, "")
			proxy.SetMode(chaos.Refuse)
			refused := pollsDuring(proxy, func() { time.Sleep(3 * time.Second) })
			outage := unreachable + refused
			t.Logf("polls: %d in 1s before the outage, %d in its 6s (%d unreachable, %d refused)", normal, outage, unreachable, refused)
			// Loose on purpose: the rate over the outage is below half the normal rate, and it
			// keeps falling (a slow machine slows both, and cannot turn backoff around).
			require.Less(t, outage, normal*3, "polling backs off during an outage")
			require.Greater(t, unreachable, refused, "and keeps backing off while the outage lasts")

			eventually(t, "the held tasks to finish during the outage", func() bool {
				return count(runner, "task finished", "") == 2
			})
			require.Len(t, spoolEntries(t, env["DLITE_SPOOL_DIR"]), 2, "their results are kept")
			for _, id := range held {
				st, err := mm.Task(id)
				require.NoError(t, err)
				require.Empty(t, st.Responses)
			}

			proxy.SetMode(chaos.Pass)
			for _, id := range held {
				st := waitDone(t, mm, id)
				require.Len(t, st.Responses, 1)
				require.Equal(t, "OK", st.Responses[0].Code)
				require.Equal(t, first, deref(st.Responses[0].DelegateId))
			}
			after := enqueue(t, mm, "SLEEP_TASK", sleepTask(0))
			st := waitDone(t, mm, after)
			require.Len(t, st.Responses, 1)
			require.Equal(t, "OK", st.Responses[0].Code)

			delegates := mm.Delegates()
			if forgotten {
				require.Len(t, delegates, 2, "a forgotten runner registers again")
				require.NotEqual(t, first, deref(st.Responses[0].DelegateId), "new work goes to the new registration")
				require.Equal(t, delegates[1].DelegateId, deref(st.Responses[0].DelegateId))
			} else {
				require.Len(t, delegates, 1, "an outage alone does not cost the registration")
				require.Equal(t, first, deref(st.Responses[0].DelegateId))
			}
			select {
			case <-runner.Done():
				t.Fatalf("the runner exited during the outage: %v", runner.Err())
			default:
			}
		})
	}
}

// A 503 or 429 with Retry-After holds the runner's polls and result deliveries back for at least
// that long, longer than its own backoff would.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			const retryAfter = 3 * time.Second
			mm := newManager(t, mockmanager.Options{})
			proxy := newProxy(t, mm.URL)
			runner := startRunner(t, "runner", managerSettings(t, mm, proxy.URL()))
			id := enqueue(t, mm, "SLEEP_TASK", sleepTask(500))
			waitState(t, mm, id, mockmanager.StateAcquired)

			proxy.SetRefusal(status, strconv.Itoa(int(retryAfter/time.Second)))
			proxy.SetMode(chaos.Refuse, chaos.OpPoll, chaos.OpReport)
			refusedFrom := time.Now()
			logged(t, runner, "task finished")
			eventually(t, "three refused polls and reports", func() bool {
				return len(since(proxy.Calls(chaos.OpPoll), refusedFrom)) >= 3 &&
					len(since(proxy.Calls(chaos.OpReport), refusedFrom)) >= 3
			})
			proxy.SetMode(chaos.Pass)
			st := waitDone(t, mm, id)
			require.Len(t, st.Responses, 1)

			for _, op := range []chaos.Op{chaos.OpPoll, chaos.OpReport} {
				calls := since(proxy.Calls(op), refusedFrom)
				// Every refused call but the last was followed by the next only after Retry-After
				// (a slow machine only makes the gaps longer).
				for i := 1; i < 3; i++ {
					gap := calls[i].At.Sub(calls[i-1].At)
					require.GreaterOrEqual(t, gap, retryAfter-50*time.Millisecond, "%s %d came %s after the refusal of %d", op, i, gap, i-1)
				}
			}
		})
	}
}

func since(calls []chaos.Call, from time.Time) []chaos.Call {
	return slices.DeleteFunc(calls, func(c chaos.Call) bool { return c.At.Before(from) })
}

// An acquire the manager granted but whose answer was lost, followed by a long outage, still
// ends with the task run once: the runner asks again until the manager answers, and the manager
// hands the task again to the delegate holding it.
func TestAcquireAnswerLostBeforeAnOutage(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	proxy := newProxy(t, mm.URL)
	runner := startRunner(t, "runner", managerSettings(t, mm, proxy.URL()))
	logged(t, runner, "registered with the manager")

	// The manager goes away right after granting the task, and its answer is lost.
	proxy.LoseNext(chaos.OpAcquire, 1)
	proxy.SetOnLost(func(chaos.Op) { proxy.Down() })
	id := enqueue(t, mm, "SLEEP_TASK", sleepTask(0))
	waitState(t, mm, id, mockmanager.StateAcquired)
	time.Sleep(10 * time.Second)
	require.NoError(t, proxy.Up())

	st := waitDone(t, mm, id)
	require.Len(t, st.Responses, 1)
	require.Equal(t, 1, st.Acquisitions)
	requireStartedOnce(t, id, runner)
}
