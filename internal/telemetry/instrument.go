package telemetry

import (
	"context"
	"sync/atomic"

	"github.com/dlite-dev/dlite/internal/manager"
)

// The operation label values of dlite_manager_request_duration_seconds.
const (
	opRegister  = "register"
	opHeartbeat = "heartbeat"
	opPoll      = "poll"
	opAcquire   = "acquire"
	opReport    = "report"
)

// InstrumentManager returns m with every call timed into dlite_manager_request_duration_seconds,
// and failed heartbeats counted into dlite_heartbeat_failures_total. It changes nothing else:
// the same arguments go through and the same answers and errors come back.
// A manager that offers tasks one long poll at a time (manager.Offerer) keeps that capability, its
// offers timed as polls.
func (r *Recorder) InstrumentManager(m manager.Manager) manager.Manager {
	im := &instrumentedManager{next: m, rec: r}
	if o, ok := m.(manager.Offerer); ok {
		return &instrumentedOfferer{instrumentedManager: im, offerer: o}
	}
	return im
}

// instrumentedOfferer is an instrumentedManager whose manager offers tasks by long polls.
type instrumentedOfferer struct {
	*instrumentedManager
	offerer manager.Offerer
}

var _ manager.Offerer = (*instrumentedOfferer)(nil)

func (m *instrumentedOfferer) Offer(ctx context.Context, delegateID string) (*manager.Event, error) {
	began := m.rec.now()
	ev, err := m.offerer.Offer(ctx, delegateID)
	m.rec.observeRequest(opPoll, began, err)
	return ev, err
}

type instrumentedManager struct {
	next manager.Manager
	rec  *Recorder
}

var _ manager.Manager = (*instrumentedManager)(nil)

func (m *instrumentedManager) Register(ctx context.Context, d manager.Delegate) (manager.Registration, error) {
	began := m.rec.now()
	reg, err := m.next.Register(ctx, d)
	m.rec.observeRequest(opRegister, began, err)
	return reg, err
}

func (m *instrumentedManager) Heartbeat(ctx context.Context, delegateID string, d manager.Delegate) (manager.Heartbeat, error) {
	began := m.rec.now()
	hb, err := m.next.Heartbeat(ctx, delegateID, d)
	m.rec.observeRequest(opHeartbeat, began, err)
	// A heartbeat cut short because the runner is stopping is not the manager's failure; the
	// session does not count it either.
	if err != nil && ctx.Err() == nil {
		m.rec.heartbeatFailures.Inc()
	}
	return hb, err
}

func (m *instrumentedManager) Poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	began := m.rec.now()
	events, err := m.next.Poll(ctx, delegateID)
	m.rec.observeRequest(opPoll, began, err)
	return events, err
}

func (m *instrumentedManager) Acquire(ctx context.Context, delegateID, taskID string) (*manager.Task, error) {
	began := m.rec.now()
	task, err := m.next.Acquire(ctx, delegateID, taskID)
	m.rec.observeRequest(opAcquire, began, err)
	return task, err
}

func (m *instrumentedManager) Report(ctx context.Context, res manager.Result) error {
	began := m.rec.now()
	err := m.next.Report(ctx, res)
	m.rec.observeRequest(opReport, began, err)
	return err
}

// Admitter is the admission controller as the poller asks it.
type Admitter interface {
	Admit() (ok bool, reason string)
}

// InstrumentAdmitter returns a, counting into dlite_admission_holds_total each time its verdict
// turns from admitting to holding back, as the poller sees it.
func (r *Recorder) InstrumentAdmitter(a Admitter) Admitter {
	return &countingAdmitter{next: a, rec: r}
}

type countingAdmitter struct {
	next    Admitter
	rec     *Recorder
	holding atomic.Bool
}

func (c *countingAdmitter) Admit() (bool, string) {
	ok, reason := c.next.Admit()
	if was := c.holding.Swap(!ok); !was && !ok {
		c.rec.admissionHolds.Inc()
	}
	return ok, reason
}
