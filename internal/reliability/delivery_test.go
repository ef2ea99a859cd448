package reliability_test

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A result finished while the manager is away is in the spool before anything is sent; a runner
// killed with SIGKILL then loses nothing: the next start, on the same spool, delivers it first
// thing, under the delegate id of the registration that ran the task, once the manager is back.
// A corrupt entry found in the spool meanwhile is moved aside without stopping the runner.
func TestResultSurvivesAKillWhileTheManagerIsAway(t *testing.T) {
	t.Parallel()
	outages := []struct {
		name string
		// runnerEndpoint answers on the runner status endpoint, which names the delegate in its
		// query; otherwise on the legacy one, which names it in its path.
		runnerEndpoint bool
		down, back     func(*testing.T, *mockmanager.TestServer, *chaos.Proxy)
	}{
		{
			name: "manager answers 503",
			down: func(t *testing.T, mm *mockmanager.TestServer, _ *chaos.Proxy) {
				require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: new(float32(1))}))
			},
			back: func(t *testing.T, mm *mockmanager.TestServer, _ *chaos.Proxy) {
				require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
			},
		},
		{
			name:           "manager unreachable",
			runnerEndpoint: true,
			down:           func(_ *testing.T, _ *mockmanager.TestServer, p *chaos.Proxy) { p.Down() },
			back:           func(t *testing.T, _ *mockmanager.TestServer, p *chaos.Proxy) { require.NoError(t, p.Up()) },
		},
	}
	for _, o := range outages {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			mm := newManager(t, mockmanager.Options{})
			proxy := newProxy(t, mm.URL)
			env := managerSettings(t, mm, proxy.URL())
			spool := env["DLITE_SPOOL_DIR"]

			first := startRunner(t, "first", env)
			id := enqueue(t, mm, "SLEEP_TASK", sleepTask(1500), func(nt *mockmanager.NewTask) { nt.RunnerResponse = new(o.runnerEndpoint) })
			holder := deref(waitState(t, mm, id, mockmanager.StateAcquired).AcquiredBy)
			logged(t, first, "task started")

			o.down(t, mm, proxy)
			logged(t, first, "task finished")
			require.Len(t, spoolEntries(t, spool), 1, "the result is spooled before it is sent")
			first.Kill()

			st, err := mm.Task(id)
			require.NoError(t, err)
			require.Empty(t, st.Responses, "nothing reached the manager while it was away")
			require.Len(t, spoolEntries(t, spool), 1, "SIGKILL does not touch what is spooled")
			garbage := filepath.Join(spool, "0000000000000000000-garbage-00000000.json")
			require.NoError(t, os.WriteFile(garbage, []byte(`{"result":`), 0o600))

			// Restarted under another name, so the manager gives it another delegate id (under the
			// same name on the same host it would get the same id back): the spooled result must still
			// name the delegate that ran the task.
			renamed := maps.Clone(env)
			renamed["DLITE_NAME"] = "reliability-runner-renamed"
			second := startRunner(t, "second", renamed)
			logged(t, second, "delivering a result kept from an earlier run")
			logged(t, second, "corrupt spool entry moved aside")
			require.FileExists(t, filepath.Join(spool, "corrupt", filepath.Base(garbage)))
			o.back(t, mm, proxy)

			st = waitDone(t, mm, id)
			require.Len(t, st.Responses, 1)
			require.Equal(t, "OK", st.Responses[0].Code)
			require.Equal(t, holder, deref(st.Responses[0].DelegateId),
				"the result names the registration that ran the task, not the new one")
			wantEndpoint := "legacy"
			if o.runnerEndpoint {
				wantEndpoint = "runner"
			}
			require.Equal(t, wantEndpoint, string(st.Responses[0].Endpoint))
			require.NotEqual(t, holder, deref(registeredID(t, second)), "the renamed runner registered anew")
			eventually(t, "the delivered result to leave the spool", func() bool { return len(spoolEntries(t, spool)) == 0 })

			logged(t, second, "registered with the manager") // read from its output, which may lag
			recs := chaos.Records(second.Output())
			redelivery := chaos.Index(recs, "delivering a result kept from an earlier run")
			registered := chaos.Index(recs, "registered with the manager")
			require.Less(t, redelivery, registered, "kept results are taken up before registering")
			require.Zero(t, count(second, "task started", ""), "the task is not run again")
			require.NoError(t, second.Stop(waitFor))
			st, err = mm.Task(id)
			require.NoError(t, err)
			require.Len(t, st.Responses, 1, "exactly one answer reached the manager")
		})
	}
}

// A result is written to the spool before it is sent but fsynced only when the manager has not
// taken it within DLITE_SPOOL_SYNC_DELAY. A runner killed with SIGKILL right after the task
// finished, long before that delay, loses nothing either: what was written is the kernel's, not
// the process's. The next start delivers it, exactly once, and does not run the task again.
func TestUnsyncedResultSurvivesAKill(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	env := managerSettings(t, mm, mm.URL)
	// Nothing syncs the result before the kill: the delay is far longer than the test.
	env["DLITE_SPOOL_SYNC_DELAY"] = "1m"
	spool := env["DLITE_SPOOL_DIR"]

	first := startRunner(t, "first", env)
	id := enqueue(t, mm, "SLEEP_TASK", sleepTask(300))
	holder := deref(waitState(t, mm, id, mockmanager.StateAcquired).AcquiredBy)
	logged(t, first, "task started")
	// The manager stops taking anything, results included.
	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: new(float32(1))}))
	logged(t, first, "task finished")
	first.Kill()

	st, err := mm.Task(id)
	require.NoError(t, err)
	require.Empty(t, st.Responses, "the manager took nothing")
	require.Len(t, spoolEntries(t, spool), 1, "the result written before the kill is in the spool")

	second := startRunner(t, "second", env)
	logged(t, second, "delivering a result kept from an earlier run")
	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
	st = waitDone(t, mm, id)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "OK", st.Responses[0].Code)
	require.Equal(t, holder, deref(st.Responses[0].DelegateId))
	eventually(t, "the delivered result to leave the spool", func() bool { return len(spoolEntries(t, spool)) == 0 })
	require.NoError(t, second.Stop(waitFor))
	require.Zero(t, count(second, "task started", ""), "the task is not run again")
	st, err = mm.Task(id)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1, "exactly one answer reached the manager")
}
