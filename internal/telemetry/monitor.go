package telemetry

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dlite-dev/dlite/internal/admission"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
)

// StaleHeartbeats is how many heartbeat intervals may pass without an answered heartbeat before a
// runner stops calling itself ready, when MonitorOptions.StaleAfter is zero. One or two lost
// heartbeats are ordinary; three in a row is when the session itself gives up and registers again.
const StaleHeartbeats = 3

// Sources are the reads of the live runtime a Monitor makes. A nil source reads as its zero value.
type Sources struct {
	// Phase is where the runner is in its life.
	Phase func() runner.Phase
	// Session is the registration as the session holds it.
	Session func() session.State
	// Slots returns the slots in use (running or reserved for an acquire) and the pool's size.
	Slots func() (inUse, size int)
	// SpoolDepth is how many results are stored in the spool.
	SpoolDepth func() int
	// PendingResults is how many results the reporter has yet to deliver.
	PendingResults func() int
	// Usage is the admission controller's latest measurement.
	Usage func() admission.Usage
}

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	Recorder *Recorder
	Sources  Sources
	// Name is the runner's name and TaskTypes the types it runs, as it registers them.
	Name      string
	TaskTypes []string
	// HeartbeatInterval is the session's heartbeat interval; with StaleAfter it says when the
	// last heartbeat is too old.
	HeartbeatInterval time.Duration
	// StaleAfter is the age of the last answered heartbeat past which the runner is not ready;
	// StaleHeartbeats × HeartbeatInterval when zero.
	StaleAfter time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Monitor answers what a runner is doing now: readiness, the status snapshot, and the gauges read
// from the runtime at scrape time.
type Monitor struct {
	rec        *Recorder
	src        Sources
	name       string
	taskTypes  []string
	staleAfter time.Duration
	now        func() time.Time
}

// Slots is the pool's occupancy in a Snapshot.
type Slots struct {
	InUse int `json:"inUse"`
	Total int `json:"total"`
}

// AdmissionStatus is the admission controller's latest measurement in a Snapshot.
type AdmissionStatus struct {
	CPUPercent    float64   `json:"cpuPercent"`
	MemoryPercent float64   `json:"memoryPercent"`
	Source        string    `json:"source"`
	Holding       bool      `json:"holding"`
	SampledAt     time.Time `json:"sampledAt,omitzero"`
}

// Snapshot is the runner's state at one moment: what the status page shows.
type Snapshot struct {
	Name  string       `json:"name"`
	Phase runner.Phase `json:"phase"`
	Ready bool         `json:"ready"`
	// NotReady says why the runner is not ready; empty when it is.
	NotReady string `json:"notReady,omitempty"`
	// DelegateID is the id the manager gave this runner; empty before the first registration.
	DelegateID    string         `json:"delegateId"`
	ManagerStatus manager.Status `json:"managerStatus,omitempty"`
	LastHeartbeat time.Time      `json:"lastHeartbeat,omitzero"`
	Registrations int            `json:"registrations"`
	TaskTypes     []string       `json:"taskTypes"`
	Slots         Slots          `json:"slots"`
	// Running are the tasks running now, oldest first.
	Running []TaskStatus `json:"running"`
	// Finished are the last finished tasks, newest first.
	Finished       []TaskStatus `json:"finished"`
	FinishedTotal  int          `json:"finishedTotal"`
	SpoolDepth     int          `json:"spoolDepth"`
	PendingResults int          `json:"pendingResults"`
	// Admission is nil when no resource ceiling is configured.
	Admission *AdmissionStatus `json:"admission,omitempty"`
	Now       time.Time        `json:"now"`
}

// NewMonitor returns a Monitor and registers the runtime's gauges (slots, spool depth, pending
// results, registration, readiness, admission) in the Recorder's registry.
func NewMonitor(opts MonitorOptions) (*Monitor, error) {
	if opts.Recorder == nil {
		return nil, errors.New("telemetry: MonitorOptions.Recorder is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StaleAfter <= 0 {
		if opts.HeartbeatInterval <= 0 {
			return nil, errors.New("telemetry: MonitorOptions needs HeartbeatInterval or StaleAfter")
		}
		opts.StaleAfter = StaleHeartbeats * opts.HeartbeatInterval
	}
	m := &Monitor{
		rec:        opts.Recorder,
		src:        withDefaults(opts.Sources),
		name:       opts.Name,
		taskTypes:  opts.TaskTypes,
		staleAfter: opts.StaleAfter,
		now:        opts.Now,
	}
	if err := opts.Recorder.registry.Register(newGauges(m)); err != nil {
		return nil, fmt.Errorf("telemetry: register the runtime gauges: %w", err)
	}
	return m, nil
}

func withDefaults(s Sources) Sources {
	if s.Phase == nil {
		s.Phase = func() runner.Phase { return runner.PhaseStarting }
	}
	if s.Session == nil {
		s.Session = func() session.State { return session.State{} }
	}
	if s.Slots == nil {
		s.Slots = func() (int, int) { return 0, 0 }
	}
	if s.SpoolDepth == nil {
		s.SpoolDepth = func() int { return 0 }
	}
	if s.PendingResults == nil {
		s.PendingResults = func() int { return 0 }
	}
	if s.Usage == nil {
		s.Usage = func() admission.Usage { return admission.Usage{} }
	}
	return s
}

// Gatherer returns what /metrics serves.
func (m *Monitor) Gatherer() prometheus.Gatherer { return m.rec.registry }

// Ready reports whether the runner takes work as it should: it runs (it is not starting,
// draining or stopped), the manager knows it and has it enabled, and the manager answered a
// heartbeat recently. When it is not ready, reason says why.
func (m *Monitor) Ready() (ok bool, reason string) {
	return m.ready(m.src.Phase(), m.src.Session(), m.now())
}

func (m *Monitor) ready(phase runner.Phase, st session.State, now time.Time) (bool, string) {
	switch phase {
	case runner.PhaseStarting, runner.PhaseRegistering:
		return false, "not registered with the manager yet"
	case runner.PhaseDraining:
		return false, "draining: taking no new work, letting running tasks finish"
	case runner.PhaseStopped:
		return false, "stopped"
	}
	if st.DelegateID == "" {
		return false, "not registered with the manager yet"
	}
	switch st.Status {
	case manager.StatusEnabled:
	case manager.StatusDeleted, manager.StatusUnknown:
		return false, fmt.Sprintf("the manager no longer knows this runner (%s); registering again", st.Status)
	default:
		return false, fmt.Sprintf("the manager has not enabled this runner (status %s)", st.Status)
	}
	if age := now.Sub(st.LastHeartbeat); age > m.staleAfter {
		return false, fmt.Sprintf("no heartbeat answered for %s (more than %s)", age.Round(time.Second), m.staleAfter)
	}
	return true, ""
}

// Snapshot returns the runner's state now.
func (m *Monitor) Snapshot() Snapshot {
	now := m.now()
	phase, st := m.src.Phase(), m.src.Session()
	ready, reason := m.ready(phase, st, now)
	inUse, size := m.src.Slots()
	s := Snapshot{
		Name:           m.name,
		Phase:          phase,
		Ready:          ready,
		NotReady:       reason,
		DelegateID:     st.DelegateID,
		ManagerStatus:  st.Status,
		LastHeartbeat:  st.LastHeartbeat,
		Registrations:  st.Registrations,
		TaskTypes:      m.taskTypes,
		Slots:          Slots{InUse: inUse, Total: size},
		Running:        m.rec.Running(now),
		Finished:       m.rec.Finished(),
		FinishedTotal:  m.rec.FinishedCount(),
		SpoolDepth:     m.src.SpoolDepth(),
		PendingResults: m.src.PendingResults(),
		Now:            now,
	}
	if u := m.src.Usage(); u.Source != "" {
		s.Admission = &AdmissionStatus{
			CPUPercent:    u.CPUPercent,
			MemoryPercent: u.MemoryPercent,
			Source:        u.Source,
			Holding:       u.Holding,
			SampledAt:     u.SampledAt,
		}
	}
	if s.TaskTypes == nil {
		s.TaskTypes = []string{}
	}
	return s
}

// gauges reads the runtime's levels at scrape time, so nothing on the runtime's paths keeps them.
type gauges struct {
	m                                *Monitor
	slots, free, spool, pending      *prometheus.Desc
	registered, ready, lastHeartbeat *prometheus.Desc
	holding, cpu, memory             *prometheus.Desc
	all                              []*prometheus.Desc
}

func newGauges(m *Monitor) *gauges {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	g := &gauges{
		m:             m,
		slots:         d("dlite_slots", "Task slots: how many tasks the runner runs at once."),
		free:          d("dlite_slots_free", "Task slots neither running a task nor reserved for an acquire."),
		spool:         d("dlite_spool_depth", "Results stored in the spool, waiting for the manager to accept them."),
		pending:       d("dlite_results_pending", "Results the reporter has yet to deliver."),
		registered:    d("dlite_registered", "1 while the runner is registered and enabled on the manager, else 0."),
		ready:         d("dlite_ready", "1 while /readyz answers 200, else 0."),
		lastHeartbeat: d("dlite_last_heartbeat_timestamp_seconds", "When the manager last answered a heartbeat or registration (Unix time)."),
		holding:       d("dlite_admission_holding", "1 while admission control holds back new work, else 0 (present when a resource ceiling is set)."),
		cpu:           d("dlite_admission_cpu_percent", "CPU use as admission control last measured it, in percent of what the runner may use."),
		memory:        d("dlite_admission_memory_percent", "Memory use as admission control last measured it, in percent of what the runner may use."),
	}
	g.all = []*prometheus.Desc{g.slots, g.free, g.spool, g.pending, g.registered, g.ready, g.lastHeartbeat, g.holding, g.cpu, g.memory}
	return g
}

// Describe implements prometheus.Collector.
func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range g.all {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	m := g.m
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	inUse, size := m.src.Slots()
	gauge(g.slots, float64(size))
	gauge(g.free, float64(size-inUse))
	gauge(g.spool, float64(m.src.SpoolDepth()))
	gauge(g.pending, float64(m.src.PendingResults()))
	phase, st := m.src.Phase(), m.src.Session()
	gauge(g.registered, bool01(st.Active()))
	ok, _ := m.ready(phase, st, m.now())
	gauge(g.ready, bool01(ok))
	if !st.LastHeartbeat.IsZero() {
		gauge(g.lastHeartbeat, float64(st.LastHeartbeat.UnixNano())/1e9)
	}
	if u := m.src.Usage(); u.Source != "" {
		gauge(g.holding, bool01(u.Holding))
		gauge(g.cpu, u.CPUPercent)
		gauge(g.memory, u.MemoryPercent)
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
