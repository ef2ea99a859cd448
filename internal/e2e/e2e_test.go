package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/mockmanager"
	"github.com/dlite-dev/dlite/tasks"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeBinary()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var builtinTypes = []string{"HTTP_TASK", "SHELL_SCRIPT_TASK", "SLEEP_TASK"}

// okHandler is a legacy handler that answers {} with 200.
var okHandler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// The register body lists every handler's task type, sorted whatever order the handlers came
// in, and the tags from the configuration; the manager offers tasks by both.
func TestRegisterSendsSortedTaskTypesAndTags(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	legacy := map[string]http.Handler{}
	for _, typ := range []string{"ZULU_TASK", "ALPHA_TASK", "MIKE_TASK", "KILO_TASK", "BRAVO_TASK", "YANKEE_TASK", "CHARLIE_TASK", "XRAY_TASK"} {
		legacy[typ] = okHandler
	}
	rt := start(t, mm, setup{Legacy: legacy, Env: map[string]string{"DLITE_TAGS": "zone-b, gpu,zone-a"}})

	d := delegates(t, mm, 1)[0]
	want := slices.Sorted(func(yield func(string) bool) {
		for typ := range legacy {
			yield(typ)
		}
		for _, typ := range builtinTypes {
			yield(typ)
		}
	})
	require.Equal(t, want, d.SupportedTaskTypes)
	require.Equal(t, want, rt.R.TaskTypes())
	require.Equal(t, []string{"gpu", "zone-a", "zone-b"}, d.Tags)

	// A task that asks for a tag the runner carries reaches it.
	nt := sleepTask(1)
	nt.Tags = &[]string{"zone-a"}
	st := answered(t, mm, enqueue(t, mm, nt))
	require.Equal(t, "OK", st.Responses[0].Code)
}

// Registration is retried with backoff until the manager answers, then the runner works.
func TestRegisterRetriesUntilTheManagerAnswers(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	p.set(func(p *proxy) {
		p.refuse = func(c call) int {
			if c.Kind == kindRegister && c.N <= 2 {
				return http.StatusServiceUnavailable
			}
			return 0
		}
	})
	rt := start(t, mm, setup{Endpoint: p.URL})
	delegates(t, mm, 1)
	require.Equal(t, 3, p.count(kindRegister, ""))
	rt.Logs.wait(t, "registration failed; retrying")
	st := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", st.Responses[0].Code)
}

// Each way a built-in task ends is reported with the right code on the endpoint the task asked
// for: OK, FAILED with the handler's error, TIMEOUT when Task.timeout passes (FAILED with an
// errorMessage on the legacy endpoint), and FAILED naming the field for data the spec refuses.
// Legacy data is always a JSON object.
func TestTaskOutcomes(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	start(t, mm, setup{Env: map[string]string{"DLITE_PARALLEL_WORKERS": "8"}})

	cases := []struct {
		name      string
		task      mockmanager.NewTask
		endpoint  string
		code      string
		errorHas  string
		checkData func(t *testing.T, data map[string]any)
	}{
		{
			name: "shell script succeeds", endpoint: "legacy", code: "OK",
			task: task("SHELL_SCRIPT_TASK", map[string]any{"script": "echo hello; GREETING=hi", "outputVars": []string{"GREETING"}}, 60, false),
			checkData: func(t *testing.T, data map[string]any) {
				require.Equal(t, "hello\n", data["output"])
				require.Equal(t, map[string]any{"GREETING": "hi"}, data["outputVars"])
			},
		},
		{
			name: "shell script fails", endpoint: "legacy", code: "FAILED", errorHas: "exit status 3",
			task: task("SHELL_SCRIPT_TASK", map[string]any{"script": "echo oops >&2; exit 3"}, 60, false),
			checkData: func(t *testing.T, data map[string]any) {
				require.Equal(t, "oops\n", data["output"])
				require.Contains(t, data["errorMessage"], "exit status 3")
			},
		},
		{
			name: "sleep on the runner endpoint", endpoint: "runner", code: "OK",
			task: task("SLEEP_TASK", map[string]any{"milliseconds": 5}, 60, true),
			checkData: func(t *testing.T, data map[string]any) {
				require.EqualValues(t, 5, data["sleptMilliseconds"])
			},
		},
		{
			name: "timeout on the runner endpoint", endpoint: "runner", code: "TIMEOUT", errorHas: "timed out after 1s",
			task: task("SHELL_SCRIPT_TASK", map[string]any{"script": "sleep 30"}, 1, true),
		},
		{
			name: "timeout on the legacy endpoint", endpoint: "legacy", code: "FAILED", errorHas: "timed out after 1s",
			task: task("SLEEP_TASK", map[string]any{"milliseconds": 30000}, 1, false),
			checkData: func(t *testing.T, data map[string]any) {
				require.Contains(t, data["errorMessage"], "timed out")
			},
		},
		{
			name: "missing field", endpoint: "legacy", code: "FAILED", errorHas: `"url" is missing`,
			task: task("HTTP_TASK", map[string]any{"method": "GET"}, 60, false),
		},
		{
			name: "field of the wrong type", endpoint: "runner", code: "FAILED", errorHas: "milliseconds",
			task: task("SLEEP_TASK", map[string]any{"milliseconds": "soon"}, 60, true),
		},
		{
			name: "no data at all", endpoint: "legacy", code: "FAILED", errorHas: `"script" is missing`,
			task: task("SHELL_SCRIPT_TASK", nil, 60, false),
		},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = enqueue(t, mm, c.task)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := answered(t, mm, ids[i])
			require.Len(t, st.Responses, 1)
			r := st.Responses[0]
			require.Equal(t, c.endpoint, string(r.Endpoint))
			require.Equal(t, c.code, r.Code, "error: %s", errorText(r))
			if c.errorHas == "" {
				require.Empty(t, errorText(r))
			} else {
				require.Contains(t, errorText(r), c.errorHas)
			}
			if c.endpoint == "legacy" || c.checkData != nil {
				data := dataObject(t, r)
				if c.checkData != nil {
					c.checkData(t, data)
				}
			}
		})
	}
}

// A handler's context carries the task's envelope and a deadline from Task.timeout.
func TestHandlerContextCarriesEnvelopeAndDeadline(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	start(t, mm, setup{Legacy: map[string]http.Handler{
		"ENVELOPE_TASK": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			env, ok := tasks.FromContext(r.Context())
			deadline, hasDeadline := r.Context().Deadline()
			_ = json.NewEncoder(w).Encode(map[string]any{
				"hasEnvelope":     ok,
				"id":              env.ID,
				"type":            env.Type,
				"timeoutSeconds":  env.Timeout.Seconds(),
				"hasDeadline":     hasDeadline,
				"deadlineSeconds": time.Until(deadline).Seconds(),
			})
		}),
	}})
	id := enqueue(t, mm, task("ENVELOPE_TASK", map[string]any{"any": "thing"}, 30, false))
	st := answered(t, mm, id)
	require.Equal(t, "OK", st.Responses[0].Code)
	data := dataObject(t, st.Responses[0])
	require.Equal(t, true, data["hasEnvelope"])
	require.Equal(t, id, data["id"])
	require.Equal(t, "ENVELOPE_TASK", data["type"])
	require.EqualValues(t, 30, data["timeoutSeconds"])
	require.Equal(t, true, data["hasDeadline"])
	require.Greater(t, data["deadlineSeconds"], 0.0)
	require.LessOrEqual(t, data["deadlineSeconds"], 30.0)
}

// A handler that panics fails its task with the panic's text; the runner goes on and runs the
// next task in the same slot.
func TestHandlerPanicFailsTheTaskAndTheRunnerGoesOn(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	start(t, mm, setup{
		Env: map[string]string{"DLITE_PARALLEL_WORKERS": "1"},
		Legacy: map[string]http.Handler{
			"PANIC_TASK": http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				panic("boom from the handler")
			}),
		},
	})
	panicked := answered(t, mm, enqueue(t, mm, task("PANIC_TASK", nil, 60, true)))
	require.Equal(t, "FAILED", panicked.Responses[0].Code)
	require.Contains(t, errorText(panicked.Responses[0]), "panicked")
	require.Contains(t, errorText(panicked.Responses[0]), "boom from the handler")

	next := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", next.Responses[0].Code)
}

// An abort event for a running shell task cancels it, even when it holds the runner's only slot:
// the script's whole process tree is stopped and the task is reported FAILED as aborted.
func TestAbortStopsTheTaskAndItsProcessTree(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	start(t, mm, setup{Env: map[string]string{"DLITE_PARALLEL_WORKERS": "1"}})

	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	script := fmt.Sprintf("sleep 60 &\necho $! > %[1]s.tmp && mv %[1]s.tmp %[1]s\nwait\n", pidFile)
	id := enqueue(t, mm, task("SHELL_SCRIPT_TASK", map[string]any{"script": script}, 120, false))

	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, waitFor, 10*time.Millisecond, "the script starts its background process")
	require.False(t, processGone(pid))

	_, err := mm.Abort(id)
	require.NoError(t, err)
	st := answered(t, mm, id)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Contains(t, errorText(st.Responses[0]), "aborted")
	require.Eventually(t, func() bool { return processGone(pid) }, waitFor, 10*time.Millisecond,
		"the script's background process %d is stopped with it", pid)
}

// A task of a type the runner has no handler for is never acquired, even when the manager offers
// it: it stays queued for a runner that can run it, and the runner goes on with the rest.
func TestUnsupportedTypesAreNeverAcquired(t *testing.T) {
	t.Parallel()
	mm := newMock(t, mockmanager.Options{})
	p := newProxy(t, mm.URL)
	// The manager is told the runner supports FOREIGN_TASK, so it offers those tasks to it.
	p.set(func(p *proxy) {
		p.register = func(params map[string]any) {
			params["supportedTaskTypes"] = append(params["supportedTaskTypes"].([]any), "FOREIGN_TASK")
		}
	})
	foreign := enqueue(t, mm, task("FOREIGN_TASK", map[string]any{}, 60, false))
	start(t, mm, setup{Endpoint: p.URL})
	require.Contains(t, delegates(t, mm, 1)[0].SupportedTaskTypes, "FOREIGN_TASK")

	st := answered(t, mm, enqueue(t, mm, sleepTask(1)))
	require.Equal(t, "OK", st.Responses[0].Code)
	// Several more polls, each offering the foreign task again.
	polls := p.count(kindPoll, "")
	require.Eventually(t, func() bool { return p.count(kindPoll, "") >= polls+5 }, waitFor, 5*time.Millisecond)

	fs, err := mm.Task(foreign)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, fs.State)
	require.Empty(t, fs.AcquireAttempts)
	require.Zero(t, p.count(kindAcquire, foreign))
}

// No more tasks run at once than DLITE_PARALLEL_WORKERS, and the pool is used in full; every
// task is acquired once, run once and answered once.
func TestNeverMoreTasksThanSlots(t *testing.T) {
	t.Parallel()
	const workers, total = 3, 20
	mm := newMock(t, mockmanager.Options{})
	var mu sync.Mutex
	running, peak := 0, 0
	runs := map[string]int{}
	start(t, mm, setup{
		Env: map[string]string{"DLITE_PARALLEL_WORKERS": strconv.Itoa(workers)},
		Legacy: map[string]http.Handler{
			"COUNTED_TASK": http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				env, _ := tasks.FromContext(r.Context())
				mu.Lock()
				running++
				peak = max(peak, running)
				runs[env.ID]++
				mu.Unlock()
				time.Sleep(150 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
			}),
		},
	})
	ids := make([]string, total)
	for i := range ids {
		ids[i] = enqueue(t, mm, task("COUNTED_TASK", map[string]any{}, 60, i%2 == 0))
	}
	for _, id := range ids {
		st := answered(t, mm, id)
		require.Len(t, st.Responses, 1, "answered once")
		require.Equal(t, "OK", st.Responses[0].Code)
		require.Equal(t, 1, st.Acquisitions)
		require.Len(t, st.AcquireAttempts, 1, "acquired with one call")
	}
	mu.Lock()
	defer mu.Unlock()
	require.LessOrEqual(t, peak, workers)
	require.Equal(t, workers, peak, "the pool is used in full")
	require.Len(t, runs, total)
	for id, n := range runs {
		require.Equal(t, 1, n, "task %s ran once", id)
	}
}
