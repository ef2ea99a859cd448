package dlite

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestEndpointReportsATaskThatRan(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lr := startRunner(t, mm, nil, nil)
	lr.waitReady(t)

	id := enqueue(t, mm, sleepTask(100))
	require.Equal(t, "OK", waitDone(t, mm, id).Responses[0].Code)

	// The reporter counts a delivery once the manager's answer is back, a moment after the
	// manager has recorded it; a heartbeat comes once a second.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		families, err := lr.scrape()
		if !assert.NoError(c, err) {
			return
		}
		delivered, _ := sample(families, "dlite_results_total", map[string]string{"outcome": "delivered"})
		assert.Equal(c, 1.0, delivered)
		beats, _ := sample(families, "dlite_manager_request_duration_seconds", map[string]string{"operation": "heartbeat", "outcome": "ok"})
		assert.GreaterOrEqual(c, beats, 1.0)
	}, waitFor, 20*time.Millisecond)

	families := lr.metrics(t)
	exactly := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"dlite_tasks_started_total", map[string]string{"type": "SLEEP_TASK"}, 1},
		{"dlite_tasks_started_total", map[string]string{"type": "SHELL_SCRIPT_TASK"}, 0},
		{"dlite_tasks_finished_total", map[string]string{"type": "SLEEP_TASK", "code": "OK"}, 1},
		{"dlite_tasks_finished_total", map[string]string{"type": "SLEEP_TASK", "code": "FAILED"}, 0},
		{"dlite_tasks_running", map[string]string{"type": "SLEEP_TASK"}, 0},
		{"dlite_task_duration_seconds", map[string]string{"type": "SLEEP_TASK", "code": "OK"}, 1},
		{"dlite_acquires_total", map[string]string{"outcome": "acquired"}, 1},
		{"dlite_manager_request_duration_seconds", map[string]string{"operation": "acquire", "outcome": "ok"}, 1},
		{"dlite_manager_request_duration_seconds", map[string]string{"operation": "report", "outcome": "ok"}, 1},
		{"dlite_manager_request_duration_seconds", map[string]string{"operation": "register", "outcome": "ok"}, 1},
		{"dlite_heartbeat_failures_total", nil, 0},
		{"dlite_results_total", map[string]string{"outcome": "delivered"}, 1},
		{"dlite_results_total", map[string]string{"outcome": "rejected"}, 0},
		{"dlite_task_updates_total", map[string]string{"outcome": "delivered"}, 0},
		{"dlite_results_pending", nil, 0},
		{"dlite_spool_depth", nil, 0},
		{"dlite_slots", nil, 4},
		{"dlite_slots_free", nil, 4},
		{"dlite_registered", nil, 1},
		{"dlite_ready", nil, 1},
		{"dlite_admission_holds_total", nil, 0},
	}
	for _, m := range exactly {
		v, ok := sample(families, m.name, m.labels)
		require.True(t, ok, "no series %s%v", m.name, m.labels)
		require.Equal(t, m.value, v, "%s%v", m.name, m.labels)
	}
	atLeastOne := []struct {
		name   string
		labels map[string]string
	}{
		{"dlite_polls_total", map[string]string{"outcome": "events"}},
		{"dlite_poll_events_total", nil},
		{"dlite_manager_request_duration_seconds", map[string]string{"operation": "poll", "outcome": "ok"}},
		{"dlite_last_heartbeat_timestamp_seconds", nil},
		{"go_goroutines", nil},
		{"process_start_time_seconds", nil},
	}
	for _, m := range atLeastOne {
		v, ok := sample(families, m.name, m.labels)
		require.True(t, ok, "no series %s%v", m.name, m.labels)
		require.Positive(t, v, "%s%v", m.name, m.labels)
	}
	_, ok := sample(families, "dlite_admission_cpu_percent", nil)
	require.False(t, ok, "no resource ceiling is configured")

	delegates := mm.Delegates()
	require.Len(t, delegates, 1)
	s := lr.status(t)
	require.Equal(t, "runner-under-test", s.Name)
	require.Equal(t, runner.PhaseRunning, s.Phase)
	require.True(t, s.Ready)
	require.Equal(t, delegates[0].DelegateId, s.DelegateID)
	require.Equal(t, manager.StatusEnabled, s.ManagerStatus)
	require.Equal(t, 4, s.Slots.Total)
	require.Zero(t, s.Slots.InUse)
	require.True(t, slices.Contains(s.TaskTypes, "SLEEP_TASK"))
	require.Empty(t, s.Running)
	require.Len(t, s.Finished, 1)
	require.Equal(t, id, s.Finished[0].ID)
	require.Equal(t, manager.CodeOK, s.Finished[0].Code)
	require.GreaterOrEqual(t, s.Finished[0].Seconds, 0.1)

	code, body := lr.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
}

func TestNotReadyUntilRegistered(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: ptr(float32(1))}))
	lr := startRunner(t, mm, nil, nil)

	// Wait until a registration has been refused, so the answer is about a runner that tried.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		families, err := lr.scrape()
		if !assert.NoError(c, err) {
			return
		}
		refused, _ := sample(families, "dlite_manager_request_duration_seconds",
			map[string]string{"operation": "register", "outcome": "manager_unavailable"})
		assert.GreaterOrEqual(c, refused, 1.0)
	}, waitFor, 20*time.Millisecond)
	code, body := lr.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: not registered with the manager yet\n", body)
	code, _ = lr.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while it cannot register")
	registered, _ := sample(lr.metrics(t), "dlite_registered", nil)
	require.Zero(t, registered)
	require.Empty(t, lr.status(t).DelegateID)

	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
	lr.waitReady(t)
}

func TestNotReadyWhileHeartbeatsFail(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lr := startRunner(t, mm, nil, nil)
	lr.waitReady(t)

	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: ptr(float32(1))}))
	// Three heartbeat intervals (1s each here) without an answer make the runner not ready.
	lr.eventually(t, "/readyz", http.StatusServiceUnavailable, "not ready: no heartbeat answered for ")
	failures, _ := sample(lr.metrics(t), "dlite_heartbeat_failures_total", nil)
	require.GreaterOrEqual(t, failures, 1.0)
	ready, _ := sample(lr.metrics(t), "dlite_ready", nil)
	require.Zero(t, ready)

	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
	lr.waitReady(t)
}

func TestNotReadyWhileDraining(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lr := startRunner(t, mm, nil, nil)
	lr.waitReady(t)
	id := enqueue(t, mm, sleepTask(int(time.Hour.Milliseconds())))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body, err := lr.fetch("/status.json")
		assert.NoError(c, err)
		assert.Equal(c, http.StatusOK, code)
		assert.Contains(c, body, `"id":"`+id+`"`)
	}, waitFor, 20*time.Millisecond)

	grace, endGrace := context.WithCancel(context.Background())
	defer endGrace()
	shutdown := make(chan error, 1)
	go func() { shutdown <- lr.Shutdown(grace) }()

	lr.eventually(t, "/readyz", http.StatusServiceUnavailable, "not ready: draining")
	code, _ := lr.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while draining, so no probe kills a runner finishing its tasks")
	s := lr.status(t)
	require.Equal(t, runner.PhaseDraining, s.Phase)
	require.Len(t, s.Running, 1, "the drain lets the task run on")
	require.Equal(t, id, s.Running[0].ID)

	endGrace()
	require.NoError(t, <-shutdown)
	require.NoError(t, lr.wait())
	_, _, err := lr.fetch("/healthz")
	require.Error(t, err, "the endpoint stops with the runner")
}

func TestCredentialsOffLoopback(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})

	_, err := LoadConfig([]string{"--http-addr", "0.0.0.0:3000"}, func(string) (string, bool) { return "", false }, io.Discard)
	require.ErrorContains(t, err, "DLITE_HTTP_USERNAME", "an open endpoint reachable from other hosts is refused")

	for _, addr := range []string{"0.0.0.0:0", "127.0.0.1:0"} {
		lr := startRunner(t, mm, map[string]string{
			"DLITE_HTTP_ADDR":     addr,
			"DLITE_HTTP_USERNAME": "ops",
			"DLITE_HTTP_PASSWORD": "a long passphrase",
		}, nil)
		for _, path := range []string{"/", "/status.json", "/metrics", "/app.js"} {
			code, _ := lr.get(t, path)
			require.Equal(t, http.StatusUnauthorized, code, "%s %s", addr, path)
			code, _ = lr.get(t, path, "ops", "a long passphrasE")
			require.Equal(t, http.StatusUnauthorized, code, "%s %s", addr, path)
			code, _ = lr.get(t, path, "ops", "a long passphrase")
			require.Equal(t, http.StatusOK, code, "%s %s", addr, path)
		}
		lr.waitReady(t) // unauthenticated, like a kubelet's probe
		code, _ := lr.get(t, "/healthz")
		require.Equal(t, http.StatusOK, code)
	}
}

func TestTakenAddressFailsNew(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	first := startRunner(t, mm, nil, nil)
	env := map[string]string{
		"DLITE_MANAGER_ENDPOINT": mm.URL,
		"DLITE_ACCOUNT_ID":       mm.AccountID(),
		"DLITE_ACCOUNT_SECRET":   mm.AccountSecret(),
		"DLITE_SPOOL_DIR":        t.TempDir(),
		"DLITE_HTTP_ADDR":        first.URL[len("http://"):],
	}
	cfg, err := LoadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err)
	_, err = New(Options{Config: cfg, TaskServers: []TaskServer{BuiltinTasks()}})
	require.ErrorContains(t, err, "give each runner on a host its own DLITE_HTTP_ADDR")

	// The failed New released what it had taken: the spool can be opened by another runner.
	env["DLITE_HTTP_ADDR"] = "off"
	cfg, err = LoadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err)
	r, err := New(Options{Config: cfg, TaskServers: []TaskServer{BuiltinTasks()}})
	require.NoError(t, err)
	require.Nil(t, r.rt.HTTP, "off disables the endpoint")
	require.NoError(t, r.Close())
}
