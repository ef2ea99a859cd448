package telemetry

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/reporter"
)

// ProviderSet provides the Recorder and the Monitor from their options.
var ProviderSet = wire.NewSet(NewRecorder, NewMonitor)

var (
	_ executor.Observer = (*Recorder)(nil)
	_ pollObserver      = (*Recorder)(nil)
)

// pollObserver is poller.Observer, restated so this package does not depend on the poller for a
// compile-time check only.
type pollObserver interface {
	Polled(events int, err error)
	Acquired(err error)
}

// DefaultHistory is how many finished tasks a Recorder keeps when RecorderOptions.History is zero.
const DefaultHistory = 100

// maxErrorBytes bounds the error text kept per finished task, so the history's memory stays
// bounded whatever a handler returns.
const maxErrorBytes = 1024

// The outcome label values that are not error codes. Errors are labelled with their errs.Code,
// a small fixed set.
const (
	outcomeOK       = "ok"
	outcomeEvents   = "events"
	outcomeEmpty    = "empty"
	outcomeAcquired = "acquired"
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// TaskTypes are the task types the runner supports. Their series start at zero, so
	// dashboards and alerts see them before the first task.
	TaskTypes []string
	// History is how many finished tasks are kept for the status page; DefaultHistory when zero.
	History int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// TaskStatus is one task as the status page shows it.
type TaskStatus struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	StartedAt time.Time `json:"startedAt"`
	// FinishedAt is zero while the task runs.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Seconds is how long the task has run so far, or ran.
	Seconds float64 `json:"seconds"`
	// Code and Error are the task's result once it finished.
	Code  manager.Code `json:"code,omitempty"`
	Error string       `json:"error,omitempty"`
}

// Recorder keeps a runner's metrics and recent task history. It implements executor.Observer and
// poller.Observer; ResultDone is the reporter's OnDone hook; InstrumentManager and
// InstrumentAdmitter wrap the manager and the admission controller. Every method is safe for
// concurrent use and returns without waiting on anything but a short mutex.
type Recorder struct {
	registry *prometheus.Registry
	now      func() time.Time

	tasksStarted      *prometheus.CounterVec
	tasksFinished     *prometheus.CounterVec
	tasksRunning      *prometheus.GaugeVec
	taskDuration      *prometheus.HistogramVec
	polls             *prometheus.CounterVec
	pollEvents        prometheus.Counter
	acquires          *prometheus.CounterVec
	managerRequests   *prometheus.HistogramVec
	heartbeatFailures prometheus.Counter
	results           *prometheus.CounterVec
	updates           *prometheus.CounterVec
	admissionHolds    prometheus.Counter

	mu       sync.Mutex
	running  map[string]executor.RunningTask
	history  []TaskStatus // a ring; next is where the next finished task goes
	next     int
	finished int
}

// NewRecorder returns a Recorder with its own Prometheus registry (never the global one, so two
// runners in one process do not collide), holding dlite's metrics and the Go runtime and process
// collectors.
func NewRecorder(opts RecorderOptions) *Recorder {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Recorder{
		registry: prometheus.NewRegistry(),
		now:      opts.Now,
		running:  make(map[string]executor.RunningTask),
		history:  make([]TaskStatus, opts.History),

		tasksStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_tasks_started_total",
			Help: "Tasks started, by task type.",
		}, []string{"type"}),
		tasksFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_tasks_finished_total",
			Help: "Tasks finished, by task type and result code (OK, FAILED, TIMEOUT).",
		}, []string{"type", "code"}),
		tasksRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dlite_tasks_running",
			Help: "Tasks running now, by task type.",
		}, []string{"type"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dlite_task_duration_seconds",
			Help:    "How long finished tasks ran, by task type and result code.",
			Buckets: []float64{0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600},
		}, []string{"type", "code"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_polls_total",
			Help: "Polls for task events, by outcome: events, empty, or the error code of a failed poll.",
		}, []string{"outcome"}),
		pollEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dlite_poll_events_total",
			Help: "Task events received by polls.",
		}),
		acquires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_acquires_total",
			Help: "Acquire requests, by outcome: acquired, or the error code (acquire_conflict when another runner won the task).",
		}, []string{"outcome"}),
		managerRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dlite_manager_request_duration_seconds",
			Help:    "Latency of requests to the manager, by operation and outcome (ok, or the error code).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation", "outcome"}),
		heartbeatFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dlite_heartbeat_failures_total",
			Help: "Heartbeats the manager did not answer successfully.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_results_total",
			Help: "Result deliveries that ended, by outcome: delivered, rejected (lost: refused for good) or expired (lost: not accepted within the result TTL).",
		}, []string{"outcome"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dlite_task_updates_total",
			Help: "Deliveries of task updates (progress a handler sent while its task ran) that ended, by outcome: delivered, rejected (lost: refused for good) or expired (lost: not accepted within the result TTL).",
		}, []string{"outcome"}),
		admissionHolds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dlite_admission_holds_total",
			Help: "Times the runner started holding back new work because CPU or memory use reached its ceiling.",
		}),
	}
	r.registry.MustRegister(
		r.tasksStarted, r.tasksFinished, r.tasksRunning, r.taskDuration,
		r.polls, r.pollEvents, r.acquires, r.managerRequests, r.heartbeatFailures,
		r.results, r.updates, r.admissionHolds,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, typ := range opts.TaskTypes {
		r.tasksStarted.WithLabelValues(typ)
		r.tasksRunning.WithLabelValues(typ)
		for _, code := range []manager.Code{manager.CodeOK, manager.CodeFailed, manager.CodeTimeout} {
			r.tasksFinished.WithLabelValues(typ, string(code))
		}
	}
	for _, o := range []string{outcomeEvents, outcomeEmpty} {
		r.polls.WithLabelValues(o)
	}
	r.acquires.WithLabelValues(outcomeAcquired)
	for _, o := range []reporter.Outcome{reporter.Delivered, reporter.Rejected, reporter.Expired} {
		r.results.WithLabelValues(string(o))
		r.updates.WithLabelValues(string(o))
	}
	return r
}

// Registry returns the registry holding the runner's metrics, for the /metrics endpoint.
func (r *Recorder) Registry() *prometheus.Registry { return r.registry }

// TaskStarted implements executor.Observer.
func (r *Recorder) TaskStarted(t executor.RunningTask) {
	r.tasksStarted.WithLabelValues(t.Type).Inc()
	r.tasksRunning.WithLabelValues(t.Type).Inc()
	r.mu.Lock()
	r.running[t.ID] = t
	r.mu.Unlock()
}

// TaskFinished implements executor.Observer.
func (r *Recorder) TaskFinished(t executor.RunningTask, res manager.Result, took time.Duration) {
	code := string(res.Code)
	r.tasksFinished.WithLabelValues(t.Type, code).Inc()
	r.tasksRunning.WithLabelValues(t.Type).Dec()
	r.taskDuration.WithLabelValues(t.Type, code).Observe(took.Seconds())
	done := TaskStatus{
		ID:         t.ID,
		Type:       t.Type,
		StartedAt:  t.StartedAt,
		FinishedAt: res.FinishedAt,
		Seconds:    took.Seconds(),
		Code:       res.Code,
		Error:      truncate(res.Error, maxErrorBytes),
	}
	if done.FinishedAt.IsZero() {
		done.FinishedAt = t.StartedAt.Add(took)
	}
	r.mu.Lock()
	delete(r.running, t.ID)
	r.history[r.next] = done
	r.next = (r.next + 1) % len(r.history)
	r.finished++
	r.mu.Unlock()
}

// Polled implements poller.Observer.
func (r *Recorder) Polled(events int, err error) {
	switch {
	case err != nil:
		r.polls.WithLabelValues(errorOutcome(err)).Inc()
	case events == 0:
		r.polls.WithLabelValues(outcomeEmpty).Inc()
	default:
		r.polls.WithLabelValues(outcomeEvents).Inc()
		r.pollEvents.Add(float64(events))
	}
}

// Acquired implements poller.Observer.
func (r *Recorder) Acquired(err error) {
	if err != nil {
		r.acquires.WithLabelValues(errorOutcome(err)).Inc()
		return
	}
	r.acquires.WithLabelValues(outcomeAcquired).Inc()
}

// ResultDone is the reporter's OnDone hook: it counts how each delivery ended, of task outcomes
// (dlite_results_total) and of task updates (dlite_task_updates_total) apart.
func (r *Recorder) ResultDone(res manager.Result, o reporter.Outcome) {
	if res.Update > 0 {
		r.updates.WithLabelValues(string(o)).Inc()
		return
	}
	r.results.WithLabelValues(string(o)).Inc()
}

// Running returns the tasks running now, oldest first, with how long each has run at now.
func (r *Recorder) Running(now time.Time) []TaskStatus {
	r.mu.Lock()
	out := make([]TaskStatus, 0, len(r.running))
	for _, t := range r.running {
		out = append(out, TaskStatus{ID: t.ID, Type: t.Type, StartedAt: t.StartedAt, Seconds: now.Sub(t.StartedAt).Seconds()})
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b TaskStatus) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// Finished returns the last finished tasks, newest first; at most RecorderOptions.History.
func (r *Recorder) Finished() []TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(r.finished, len(r.history))
	out := make([]TaskStatus, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.history[(r.next-i+len(r.history))%len(r.history)])
	}
	return out
}

// FinishedCount returns how many tasks have finished since the Recorder was made.
func (r *Recorder) FinishedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

func (r *Recorder) observeRequest(op string, began time.Time, err error) {
	outcome := outcomeOK
	if err != nil {
		outcome = errorOutcome(err)
	}
	r.managerRequests.WithLabelValues(op, outcome).Observe(r.now().Sub(began).Seconds())
}

// errorOutcome labels an error with its code: a fixed set of values, whatever the error's text.
func errorOutcome(err error) string { return string(errs.CodeOf(err)) }

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
