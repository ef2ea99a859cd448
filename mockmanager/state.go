package mockmanager

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
)

// delegate is a registration. Every registration makes a new one, as on the real manager.
type delegate struct {
	id string
	// token is the delegateRandomToken the delegate registered with: one per runner process.
	token string
	// tokenSince is when the current token registered: when a new runner process took over the
	// delegate id from an earlier one.
	tokenSince time.Time
	name       string
	hostName   string
	// typ and ng are the delegate type and next-gen flag it registered with; with the name and
	// host name they identify a runner across restarts.
	typ       string
	ng        bool
	tags      []string
	taskTypes []string
	capacity  *int
	status    adminapi.DelegateStatus
	// lastSeen is the registration or the latest heartbeat, whichever is later.
	lastSeen      time.Time
	lastHeartbeat *time.Time
	// pendingAborts are the aborted tasks this delegate holds whose abort event it has not
	// fetched yet.
	pendingAborts []*task
}

type task struct {
	id             string
	typ            string
	data           *json.RawMessage
	timeout        int64
	runnerResponse bool
	tags           []string
	createdAt      time.Time
	// stage is the CI stage runtime id the task's data names, for CI task types.
	stage string

	state      TaskState
	acquiredBy string
	// acquiredToken is the token of the runner process that acquired the task. A new process that
	// comes back under the same delegate id does not know the task.
	acquiredToken string
	acquisitions  int
	conflicts     int
	attempts      []AcquireAttempt
	responses     []RecordedResponse
}

// outcome is how a call on the state ended, for the API to pick its answer.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeConflict
	outcomeUnknownTask
	outcomeUnknownDelegate
	outcomeDeletedDelegate
)

// notifyLocked wakes every WaitTask.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) lost(d *delegate, now time.Time) bool {
	return s.delegateTimeout > 0 && now.Sub(d.lastSeen) > s.delegateTimeout
}

// replaced reports whether the runner process that acquired t was replaced under the same
// delegate id (a restart on the same host) longer than the delegate timeout ago: the new process
// never heard of t, and the old one had that long to deliver what its spool held.
func (s *Server) replaced(d *delegate, t *task, now time.Time) bool {
	return t.acquiredToken != "" && t.acquiredToken != d.token && now.Sub(d.tokenSince) > s.delegateTimeout
}

// reapLocked puts the unanswered tasks of lost delegates, and of runner processes replaced under
// their delegate id, back in the queue. It runs whenever the
// state is looked at, so the clock in Options.Now alone decides when a delegate is lost.
func (s *Server) reapLocked(now time.Time) {
	if s.delegateTimeout <= 0 {
		return
	}
	changed := false
	for _, t := range s.taskOrder {
		if t.state != StateAcquired {
			continue
		}
		d, ok := s.holder(t)
		if !ok {
			continue
		}
		if s.lost(d, now) {
			s.log.Info("delegate lost, task back in the queue",
				"delegate", d.id, "task", t.id, "last_seen", d.lastSeen)
		} else if s.replaced(d, t, now) {
			s.log.Info("the runner process that held the task was replaced, task back in the queue",
				"delegate", d.id, "task", t.id, "replaced_at", d.tokenSince)
		} else {
			continue
		}
		t.state = StateQueued
		t.acquiredBy, t.acquiredToken = "", ""
		changed = true
	}
	if changed {
		s.notifyLocked()
	}
}

// holder returns the delegate that acquired t, known or forgotten.
func (s *Server) holder(t *task) (*delegate, bool) {
	if d, ok := s.delegates[t.acquiredBy]; ok {
		return d, true
	}
	d, ok := s.forgotten[t.acquiredBy]
	return d, ok
}

// register records a registration and returns the delegate's id. A runner process that registers
// again (same delegateRandomToken) keeps its id, as on the real manager, so the tasks it holds stay
// its own. A new process on the same host (same host name, name, type and next-gen flag as a
// delegate that is not deleted) gets that delegate's id back too: the rule the manager is
// inferred to follow (a manager change looks an existing delegate up by account, host name, ng
// and type), which lets a restarted runner keep the CI stages pinned to it. Once deleted, or from
// another host, a runner gets a new id.
func (s *Server) register(p managerapi.DelegateParams) string {
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(now)
	defer s.notifyLocked()
	if d := s.knownLocked(p); d != nil {
		if token := deref(p.DelegateRandomToken); token != d.token {
			d.token, d.tokenSince = token, now
		}
		d.name, d.hostName = deref(p.DelegateName), deref(p.HostName)
		d.tags, d.taskTypes = cloneOrEmpty(p.Tags), cloneOrEmpty(p.SupportedTaskTypes)
		d.lastSeen = now
		return d.id
	}
	d := &delegate{
		id:         newID("delegate"),
		token:      deref(p.DelegateRandomToken),
		tokenSince: now,
		name:       deref(p.DelegateName),
		hostName:   deref(p.HostName),
		typ:        deref(p.DelegateType),
		ng:         deref(p.Ng),
		tags:       cloneOrEmpty(p.Tags),
		taskTypes:  cloneOrEmpty(p.SupportedTaskTypes),
		status:     adminapi.DelegateStatusENABLED,
		lastSeen:   now,
	}
	s.delegates[d.id] = d
	s.delegateOrder = append(s.delegateOrder, d)
	return d.id
}

// knownLocked finds the delegate a registration comes from: the same process (same token), else
// the same runner restarted on the same host.
func (s *Server) knownLocked(p managerapi.DelegateParams) *delegate {
	token, host := deref(p.DelegateRandomToken), deref(p.HostName)
	for _, d := range s.delegateOrder {
		if s.delegates[d.id] == d && d.status != adminapi.DelegateStatusDELETED && token != "" && d.token == token {
			return d
		}
	}
	if host == "" {
		return nil
	}
	for _, d := range s.delegateOrder {
		if s.delegates[d.id] == d && d.status != adminapi.DelegateStatusDELETED && d.hostName == host && d.name == deref(p.DelegateName) &&
			d.typ == deref(p.DelegateType) && d.ng == deref(p.Ng) {
			return d
		}
	}
	return nil
}

// heartbeat records a heartbeat and returns the delegate's status; ok is false for an unknown
// delegate.
func (s *Server) heartbeat(id string) (status adminapi.DelegateStatus, ok bool) {
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegates[id]
	if !ok {
		return "", false
	}
	d.lastSeen = now
	d.lastHeartbeat = &now
	s.reapLocked(now)
	s.notifyLocked()
	return d.status, true
}

func (s *Server) setCapacity(id string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegates[id]
	if !ok {
		return false
	}
	d.capacity = &n
	s.notifyLocked()
	return true
}

// events returns the delegate's pending abort events, then the queued tasks it may run, oldest
// first, at most maxEvents in all. Abort events are delivered once; task events are offered again
// on every poll until the task is acquired, as on the real manager.
func (s *Server) events(id string, syncOnly bool) ([]managerapi.TaskEvent, outcome, error) {
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(now)
	d, ok := s.delegates[id]
	switch {
	case !ok:
		return nil, outcomeUnknownDelegate, nil
	case d.status == adminapi.DelegateStatusDELETED:
		return nil, outcomeDeletedDelegate, nil
	}
	out := []managerapi.TaskEvent{}
	// Every task here is asynchronous, so a poll for synchronous events only finds nothing.
	if syncOnly || s.lost(d, now) {
		return out, outcomeOK, nil
	}
	n := min(len(d.pendingAborts), s.maxEvents)
	for _, t := range d.pendingAborts[:n] {
		var ev managerapi.TaskEvent
		if err := ev.FromDelegateTaskAbortEvent(s.eventFields(t)); err != nil {
			return nil, outcomeOK, err
		}
		out = append(out, ev)
	}
	d.pendingAborts = slices.Delete(d.pendingAborts, 0, n)
	for _, t := range s.taskOrder {
		if len(out) >= s.maxEvents {
			break
		}
		if t.state != StateQueued || !d.accepts(t) || !s.eligibleLocked(d.id, t) {
			continue
		}
		var ev managerapi.TaskEvent
		if err := ev.FromDelegateTaskEvent(s.eventFields(t)); err != nil {
			return nil, outcomeOK, err
		}
		out = append(out, ev)
	}
	return out, outcomeOK, nil
}

func (s *Server) eventFields(t *task) managerapi.TaskEventFields {
	return managerapi.TaskEventFields{
		AccountId:      new(s.accountID),
		DelegateTaskId: t.id,
		Sync:           new(false),
		TaskType:       new(t.typ),
	}
}

// accepts reports whether the delegate may be offered the task: it supports the task's type and
// carries every one of its tags.
func (d *delegate) accepts(t *task) bool {
	if !slices.Contains(d.taskTypes, t.typ) {
		return false
	}
	for _, tag := range t.tags {
		if !slices.Contains(d.tags, tag) {
			return false
		}
	}
	return true
}

// acquire hands a queued task to the first delegate that asks. The delegate holding a task gets it
// again if it asks again, as from the real manager, so an acquire whose answer was lost on the way
// can be retried; that does not count as another acquisition. Every call on a known task is
// recorded as an attempt, so tests can tell a runner that acquires twice.
func (s *Server) acquire(delegateID, instanceID, taskID string) (managerapi.Task, outcome, TaskState) {
	now := s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(now)
	d, ok := s.delegates[delegateID]
	switch {
	case !ok:
		return managerapi.Task{}, outcomeUnknownDelegate, ""
	case d.status == adminapi.DelegateStatusDELETED:
		return managerapi.Task{}, outcomeDeletedDelegate, ""
	}
	t, ok := s.tasks[taskID]
	if !ok {
		return managerapi.Task{}, outcomeUnknownTask, ""
	}
	defer s.notifyLocked()
	regrant := t.state == StateAcquired && t.acquiredBy == delegateID
	if (t.state != StateQueued && !regrant) || !s.eligibleLocked(delegateID, t) {
		t.conflicts++
		t.attempts = append(t.attempts, AcquireAttempt{DelegateId: delegateID, Granted: false, At: now})
		return managerapi.Task{}, outcomeConflict, t.state
	}
	if !regrant {
		t.state = StateAcquired
		t.acquiredBy = delegateID
		if d, ok := s.delegates[delegateID]; ok {
			t.acquiredToken = d.token
		}
		t.acquisitions++
	}
	t.attempts = append(t.attempts, AcquireAttempt{DelegateId: delegateID, Granted: true, At: now})
	return managerapi.Task{
		Id:             t.id,
		Type:           t.typ,
		Data:           t.data,
		Async:          new(true),
		RunnerResponse: new(t.runnerResponse),
		Timeout:        new(t.timeout),
		Logging: &managerapi.TaskLogging{
			Token:        new(randomHex(16)),
			Abstractions: &map[string]string{"accountId": s.accountID, "taskId": t.id},
		},
		Delegate: &managerapi.TaskDelegate{
			Id:         new(delegateID),
			InstanceId: new(instanceID),
			Token:      new(randomHex(16)),
		},
		Capabilities: new(json.RawMessage(`[]`)),
	}, outcomeOK, StateAcquired
}

// respond records an answer. A queued or acquired task becomes done on its first answer; later
// answers, and answers to aborted tasks, are recorded without changing the state.
func (s *Server) respond(taskID string, r RecordedResponse) bool {
	r.ReceivedAt = s.now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[taskID]
	if !ok {
		return false
	}
	t.responses = append(t.responses, r)
	s.pinLocked(t, r)
	if t.state == StateQueued || t.state == StateAcquired {
		t.state = StateDone
	}
	s.notifyLocked()
	return true
}

// status copies the task out, so callers never share memory with the locked state.
func (t *task) status() TaskStatus {
	st := TaskStatus{
		Id:              t.id,
		Type:            t.typ,
		State:           t.state,
		Acquisitions:    t.acquisitions,
		Conflicts:       t.conflicts,
		AcquireAttempts: append([]AcquireAttempt{}, t.attempts...),
		Responses:       append([]RecordedResponse{}, t.responses...),
		RunnerResponse:  new(t.runnerResponse),
		Timeout:         new(t.timeout),
		Tags:            new(cloneOrEmpty(&t.tags)),
		CreatedAt:       t.createdAt,
	}
	if t.stage != "" {
		st.StageId = new(t.stage)
	}
	if t.acquiredBy != "" {
		st.AcquiredBy = new(t.acquiredBy)
	}
	return st
}

func (d *delegate) view() Delegate {
	v := Delegate{
		DelegateId:         d.id,
		Name:               d.name,
		Tags:               slices.Clone(d.tags),
		SupportedTaskTypes: slices.Clone(d.taskTypes),
		Status:             d.status,
	}
	if d.hostName != "" {
		v.HostName = new(d.hostName)
	}
	if d.capacity != nil {
		v.Capacity = new(*d.capacity)
	}
	if d.lastHeartbeat != nil {
		v.LastHeartbeat = new(*d.lastHeartbeat)
	}
	return v
}

// newID returns a fresh id such as "task-3f9c0a1b2c3d4e5f"; random rather than counted, so ids
// from two mock managers (or two runs) never collide.
func newID(prefix string) string { return prefix + "-" + randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// cloneOrEmpty copies a list, turning an absent one into an empty one: the admin contract
// requires the lists to be present.
func cloneOrEmpty(p *[]string) []string {
	if p == nil || *p == nil {
		return []string{}
	}
	return slices.Clone(*p)
}
