package telemetry_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/admission"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
	"github.com/dlite-dev/dlite/internal/telemetry"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// value returns the value of the series name{labels} in g, failing the test when it is absent.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := lookup(t, g, name, labels)
	require.True(t, ok, "no series %s%v", name, labels)
	return v
}

func lookup(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range m.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return len(got) == len(want)
}

func TestTaskObserversFeedMetricsAndHistory(t *testing.T) {
	t.Parallel()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{TaskTypes: []string{"SLEEP_TASK", "HTTP_TASK"}})
	reg := rec.Registry()

	// Series of supported types exist before any task.
	require.Zero(t, value(t, reg, "dlite_tasks_started_total", map[string]string{"type": "HTTP_TASK"}))
	require.Zero(t, value(t, reg, "dlite_tasks_finished_total", map[string]string{"type": "HTTP_TASK", "code": "TIMEOUT"}))

	a := executor.RunningTask{ID: "a", Type: "SLEEP_TASK", StartedAt: t0}
	b := executor.RunningTask{ID: "b", Type: "SLEEP_TASK", StartedAt: t0.Add(time.Second)}
	rec.TaskStarted(b)
	rec.TaskStarted(a)
	require.Equal(t, 2.0, value(t, reg, "dlite_tasks_started_total", map[string]string{"type": "SLEEP_TASK"}))
	require.Equal(t, 2.0, value(t, reg, "dlite_tasks_running", map[string]string{"type": "SLEEP_TASK"}))

	running := rec.Running(t0.Add(3 * time.Second))
	require.Len(t, running, 2)
	require.Equal(t, "a", running[0].ID, "oldest first")
	require.Equal(t, 3.0, running[0].Seconds)
	require.Equal(t, 2.0, running[1].Seconds)

	rec.TaskFinished(a, manager.Result{TaskID: "a", Code: manager.CodeFailed, Error: "exit status 3", FinishedAt: t0.Add(4 * time.Second)}, 4*time.Second)
	require.Equal(t, 1.0, value(t, reg, "dlite_tasks_running", map[string]string{"type": "SLEEP_TASK"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_tasks_finished_total", map[string]string{"type": "SLEEP_TASK", "code": "FAILED"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_task_duration_seconds", map[string]string{"type": "SLEEP_TASK", "code": "FAILED"}))

	fin := rec.Finished()
	require.Equal(t, []telemetry.TaskStatus{{
		ID: "a", Type: "SLEEP_TASK", StartedAt: t0, FinishedAt: t0.Add(4 * time.Second), Seconds: 4,
		Code: manager.CodeFailed, Error: "exit status 3",
	}}, fin)
	require.Len(t, rec.Running(t0), 1)
	require.Equal(t, 1, rec.FinishedCount())
}

func TestHistoryKeepsTheNewestAndBoundsErrors(t *testing.T) {
	t.Parallel()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{History: 5})
	long := strings.Repeat("é", 2000) // two bytes each: a cut in the middle of one must not happen
	for i := range 12 {
		task := executor.RunningTask{ID: fmt.Sprint(i), Type: "T", StartedAt: t0}
		rec.TaskStarted(task)
		rec.TaskFinished(task, manager.Result{Code: manager.CodeOK, Error: long}, time.Second)
	}
	fin := rec.Finished()
	require.Len(t, fin, 5)
	for i, want := range []string{"11", "10", "9", "8", "7"} {
		require.Equal(t, want, fin[i].ID, "newest first")
	}
	require.LessOrEqual(t, len(fin[0].Error), 1024)
	require.True(t, strings.HasSuffix(fin[0].Error, "…"))
	require.NotContains(t, fin[0].Error, "\uFFFD")
	require.Equal(t, 12, rec.FinishedCount())
	require.Empty(t, rec.Running(t0))
}

func TestPollAcquireAndResultOutcomes(t *testing.T) {
	t.Parallel()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{})
	reg := rec.Registry()
	rec.Polled(0, nil)
	rec.Polled(3, nil)
	rec.Polled(0, errs.Wrap(errs.CodeManagerUnavailable, "poll", fmt.Errorf("connection reset with a long text %d", 42)))
	rec.Acquired(nil)
	rec.Acquired(errs.ErrAcquireConflict)
	rec.ResultDone(manager.Result{}, reporter.Delivered)
	rec.ResultDone(manager.Result{}, reporter.Rejected)
	rec.ResultDone(manager.Result{Update: 1}, reporter.Delivered)
	rec.ResultDone(manager.Result{Update: 2}, reporter.Delivered)
	rec.ResultDone(manager.Result{Update: 3}, reporter.Expired)

	require.Equal(t, 1.0, value(t, reg, "dlite_polls_total", map[string]string{"outcome": "empty"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_polls_total", map[string]string{"outcome": "events"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_polls_total", map[string]string{"outcome": "manager_unavailable"}))
	require.Equal(t, 3.0, value(t, reg, "dlite_poll_events_total", nil))
	require.Equal(t, 1.0, value(t, reg, "dlite_acquires_total", map[string]string{"outcome": "acquired"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_acquires_total", map[string]string{"outcome": "acquire_conflict"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_results_total", map[string]string{"outcome": "delivered"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_results_total", map[string]string{"outcome": "rejected"}))
	require.Equal(t, 0.0, value(t, reg, "dlite_results_total", map[string]string{"outcome": "expired"}))
	require.Equal(t, 2.0, value(t, reg, "dlite_task_updates_total", map[string]string{"outcome": "delivered"}), "updates are no results")
	require.Equal(t, 0.0, value(t, reg, "dlite_task_updates_total", map[string]string{"outcome": "rejected"}))
	require.Equal(t, 1.0, value(t, reg, "dlite_task_updates_total", map[string]string{"outcome": "expired"}))
}

// fakeManager answers every call with err.
type fakeManager struct{ err error }

func (f fakeManager) Register(context.Context, manager.Delegate) (manager.Registration, error) {
	return manager.Registration{DelegateID: "d1"}, f.err
}

func (f fakeManager) Heartbeat(context.Context, string, manager.Delegate) (manager.Heartbeat, error) {
	return manager.Heartbeat{Status: manager.StatusEnabled}, f.err
}

func (f fakeManager) Poll(context.Context, string) ([]manager.Event, error) { return nil, f.err }

func (f fakeManager) Acquire(context.Context, string, string) (*manager.Task, error) {
	return &manager.Task{}, f.err
}

func (f fakeManager) Report(context.Context, manager.Result) error { return f.err }

func TestInstrumentedManagerTimesEveryOperation(t *testing.T) {
	t.Parallel()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{})
	reg := rec.Registry()
	ctx := context.Background()

	ok := rec.InstrumentManager(fakeManager{})
	reg1, err := ok.Register(ctx, manager.Delegate{})
	require.NoError(t, err)
	require.Equal(t, "d1", reg1.DelegateID, "answers pass through")
	_, _ = ok.Heartbeat(ctx, "d1", manager.Delegate{})
	_, _ = ok.Poll(ctx, "d1")
	_, _ = ok.Acquire(ctx, "d1", "t1")
	_ = ok.Report(ctx, manager.Result{})
	for _, op := range []string{"register", "heartbeat", "poll", "acquire", "report"} {
		require.Equal(t, 1.0, value(t, reg, "dlite_manager_request_duration_seconds", map[string]string{"operation": op, "outcome": "ok"}), op)
	}

	failing := rec.InstrumentManager(fakeManager{err: errs.ErrManagerUnavailable})
	_, err = failing.Heartbeat(ctx, "d1", manager.Delegate{})
	require.ErrorIs(t, err, errs.ErrManagerUnavailable, "errors pass through")
	require.Equal(t, 1.0, value(t, reg, "dlite_heartbeat_failures_total", nil))
	require.Equal(t, 1.0, value(t, reg, "dlite_manager_request_duration_seconds", map[string]string{"operation": "heartbeat", "outcome": "manager_unavailable"}))

	// A heartbeat cut short by the runner stopping is not a failure of the manager.
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = failing.Heartbeat(stopped, "d1", manager.Delegate{})
	require.Equal(t, 1.0, value(t, reg, "dlite_heartbeat_failures_total", nil))
}

type scriptedAdmitter struct {
	mu      sync.Mutex
	answers []bool
}

func (s *scriptedAdmitter) Admit() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.answers[0]
	s.answers = s.answers[1:]
	if ok {
		return true, ""
	}
	return false, "memory 95% ≥ ceiling 90%"
}

func TestAdmissionHoldsCountTransitions(t *testing.T) {
	t.Parallel()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{})
	a := rec.InstrumentAdmitter(&scriptedAdmitter{answers: []bool{true, false, false, false, true, true, false, true}})
	for range 8 {
		_, _ = a.Admit()
	}
	require.Equal(t, 2.0, value(t, rec.Registry(), "dlite_admission_holds_total", nil))

	held := rec.InstrumentAdmitter(&scriptedAdmitter{answers: []bool{false}})
	ok, reason := held.Admit()
	require.False(t, ok)
	require.Equal(t, "memory 95% ≥ ceiling 90%", reason, "the verdict passes through")
	require.Equal(t, 3.0, value(t, rec.Registry(), "dlite_admission_holds_total", nil))
}

// world is a runtime whose reads a test sets.
type world struct {
	mu      sync.Mutex
	phase   runner.Phase
	state   session.State
	inUse   int
	usage   admission.Usage
	now     time.Time
	spooled int
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

func (w *world) sources() telemetry.Sources {
	return telemetry.Sources{
		Phase: func() runner.Phase {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.phase
		},
		Session: func() session.State {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.state
		},
		Slots: func() (int, int) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.inUse, 4
		},
		SpoolDepth: func() int {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.spooled
		},
		PendingResults: func() int {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.spooled
		},
		Usage: func() admission.Usage {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.usage
		},
	}
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func newMonitor(t *testing.T, w *world) (*telemetry.Recorder, *telemetry.Monitor) {
	t.Helper()
	rec := telemetry.NewRecorder(telemetry.RecorderOptions{TaskTypes: []string{"SLEEP_TASK"}})
	mon, err := telemetry.NewMonitor(telemetry.MonitorOptions{
		Recorder:          rec,
		Sources:           w.sources(),
		Name:              "runner-1",
		TaskTypes:         []string{"SLEEP_TASK"},
		HeartbeatInterval: 10 * time.Second,
		Now:               w.clock,
	})
	require.NoError(t, err)
	return rec, mon
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	registered := session.State{DelegateID: "d1", Status: manager.StatusEnabled, LastHeartbeat: t0, Registrations: 1}
	cases := []struct {
		name   string
		phase  runner.Phase
		state  session.State
		now    time.Time
		ready  bool
		reason string
	}{
		{"starting", runner.PhaseStarting, session.State{}, t0, false, "not registered"},
		{"registering", runner.PhaseRegistering, session.State{}, t0, false, "not registered"},
		{"running but never registered", runner.PhaseRunning, session.State{}, t0, false, "not registered"},
		{"registered, recent heartbeat", runner.PhaseRunning, registered, t0.Add(29 * time.Second), true, ""},
		{"stale heartbeat", runner.PhaseRunning, registered, t0.Add(31 * time.Second), false, "no heartbeat answered for 31s (more than 30s)"},
		{"waiting for approval", runner.PhaseRunning, session.State{DelegateID: "d1", Status: manager.StatusWaitingForApproval, LastHeartbeat: t0}, t0, false, "not enabled this runner (status WAITING_FOR_APPROVAL)"},
		{"deleted", runner.PhaseRunning, session.State{DelegateID: "d1", Status: manager.StatusDeleted, LastHeartbeat: t0}, t0, false, "no longer knows this runner"},
		{"draining", runner.PhaseDraining, registered, t0, false, "draining"},
		{"stopped", runner.PhaseStopped, registered, t0, false, "stopped"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := &world{phase: tc.phase, state: tc.state, now: tc.now}
			rec, mon := newMonitor(t, w)
			ok, reason := mon.Ready()
			require.Equal(t, tc.ready, ok)
			if tc.reason == "" {
				require.Empty(t, reason)
			} else {
				require.Contains(t, reason, tc.reason)
			}
			require.Equal(t, map[bool]float64{true: 1, false: 0}[tc.ready], value(t, rec.Registry(), "dlite_ready", nil))
			snap := mon.Snapshot()
			require.Equal(t, tc.ready, snap.Ready)
			require.Equal(t, reason, snap.NotReady)
		})
	}
}

func TestSnapshotAndGauges(t *testing.T) {
	t.Parallel()
	w := &world{
		phase:   runner.PhaseRunning,
		state:   session.State{DelegateID: "d1", Status: manager.StatusEnabled, LastHeartbeat: t0, Registrations: 2},
		inUse:   1,
		now:     t0.Add(5 * time.Second),
		spooled: 3,
	}
	rec, mon := newMonitor(t, w)
	task := executor.RunningTask{ID: "t1", Type: "SLEEP_TASK", StartedAt: t0}
	rec.TaskStarted(task)

	snap := mon.Snapshot()
	require.Equal(t, "runner-1", snap.Name)
	require.Equal(t, runner.PhaseRunning, snap.Phase)
	require.Equal(t, "d1", snap.DelegateID)
	require.Equal(t, manager.StatusEnabled, snap.ManagerStatus)
	require.Equal(t, 2, snap.Registrations)
	require.Equal(t, telemetry.Slots{InUse: 1, Total: 4}, snap.Slots)
	require.Equal(t, []telemetry.TaskStatus{{ID: "t1", Type: "SLEEP_TASK", StartedAt: t0, Seconds: 5}}, snap.Running)
	require.Empty(t, snap.Finished)
	require.NotNil(t, snap.Finished, "an empty list, so the page's JSON has [] rather than null")
	require.Equal(t, 3, snap.SpoolDepth)
	require.Nil(t, snap.Admission, "no ceiling configured")
	require.Equal(t, []string{"SLEEP_TASK"}, snap.TaskTypes)

	reg := rec.Registry()
	require.Equal(t, 4.0, value(t, reg, "dlite_slots", nil))
	require.Equal(t, 3.0, value(t, reg, "dlite_slots_free", nil))
	require.Equal(t, 3.0, value(t, reg, "dlite_spool_depth", nil))
	require.Equal(t, 3.0, value(t, reg, "dlite_results_pending", nil))
	require.Equal(t, 1.0, value(t, reg, "dlite_registered", nil))
	require.Equal(t, float64(t0.Unix()), value(t, reg, "dlite_last_heartbeat_timestamp_seconds", nil))
	_, present := lookup(t, reg, "dlite_admission_cpu_percent", nil)
	require.False(t, present, "admission gauges only with a ceiling")

	w.set(func(w *world) {
		w.usage = admission.Usage{CPUPercent: 42.5, MemoryPercent: 91, Source: admission.SourceCgroup, Holding: true, SampledAt: t0}
	})
	require.Equal(t, 42.5, value(t, reg, "dlite_admission_cpu_percent", nil))
	require.Equal(t, 91.0, value(t, reg, "dlite_admission_memory_percent", nil))
	require.Equal(t, 1.0, value(t, reg, "dlite_admission_holding", nil))
	snap = mon.Snapshot()
	require.Equal(t, &telemetry.AdmissionStatus{CPUPercent: 42.5, MemoryPercent: 91, Source: "cgroup", Holding: true, SampledAt: t0}, snap.Admission)

	rec.TaskFinished(task, manager.Result{Code: manager.CodeOK, FinishedAt: t0.Add(6 * time.Second)}, 6*time.Second)
	snap = mon.Snapshot()
	require.Empty(t, snap.Running)
	require.Len(t, snap.Finished, 1)
	require.Equal(t, manager.CodeOK, snap.Finished[0].Code)
	require.Equal(t, 1, snap.FinishedTotal)
}

func TestMetricsFollowPrometheusConventions(t *testing.T) {
	t.Parallel()
	w := &world{phase: runner.PhaseRunning, usage: admission.Usage{Source: admission.SourceHost}}
	rec, _ := newMonitor(t, w)
	problems, err := testutil.GatherAndLint(rec.Registry())
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestMonitorNeedsARecorderAndAnInterval(t *testing.T) {
	t.Parallel()
	_, err := telemetry.NewMonitor(telemetry.MonitorOptions{HeartbeatInterval: time.Second})
	require.ErrorContains(t, err, "Recorder")
	_, err = telemetry.NewMonitor(telemetry.MonitorOptions{Recorder: telemetry.NewRecorder(telemetry.RecorderOptions{})})
	require.ErrorContains(t, err, "HeartbeatInterval")

	rec := telemetry.NewRecorder(telemetry.RecorderOptions{})
	_, err = telemetry.NewMonitor(telemetry.MonitorOptions{Recorder: rec, HeartbeatInterval: time.Second})
	require.NoError(t, err)
	_, err = telemetry.NewMonitor(telemetry.MonitorOptions{Recorder: rec, HeartbeatInterval: time.Second})
	require.Error(t, err, "one Monitor per Recorder: the gauges would be registered twice")
}

// The hooks run on the runtime's goroutines while the page and scrapes read; the race detector
// checks they share nothing unguarded.
func TestConcurrentObserversAndReaders(t *testing.T) {
	t.Parallel()
	w := &world{phase: runner.PhaseRunning, now: t0}
	rec, mon := newMonitor(t, w)
	m := rec.InstrumentManager(fakeManager{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				task := executor.RunningTask{ID: fmt.Sprintf("%d-%d", g, i), Type: "SLEEP_TASK", StartedAt: t0}
				rec.TaskStarted(task)
				rec.Polled(1, nil)
				rec.Acquired(nil)
				_, _ = m.Poll(context.Background(), "d1")
				rec.TaskFinished(task, manager.Result{Code: manager.CodeOK}, time.Millisecond)
				rec.ResultDone(manager.Result{}, reporter.Delivered)
			}
		})
	}
	var gatherErr error
	wg.Go(func() {
		for range 100 {
			_ = mon.Snapshot()
			if _, err := rec.Registry().Gather(); err != nil {
				gatherErr = err
			}
		}
	})
	wg.Wait()
	require.NoError(t, gatherErr)
	require.Equal(t, 1600, rec.FinishedCount())
	require.Equal(t, 1600.0, value(t, rec.Registry(), "dlite_tasks_finished_total", map[string]string{"type": "SLEEP_TASK", "code": "OK"}))
	require.Equal(t, 0.0, value(t, rec.Registry(), "dlite_tasks_running", map[string]string{"type": "SLEEP_TASK"}))
	require.Len(t, rec.Finished(), telemetry.DefaultHistory)
}
