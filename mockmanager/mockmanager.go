package mockmanager

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
)

// The admin API's models, under names that read well from this package.
type (
	// NewTask is a task to enqueue.
	NewTask = adminapi.NewTask
	// TaskStatus is a task as the mock manager sees it, with every answer recorded for it.
	TaskStatus = adminapi.TaskStatus
	// TaskState is the state of a task: queued, acquired, done or aborted.
	TaskState = adminapi.TaskStateName
	// RecordedResponse is one answer a delegate sent for a task.
	RecordedResponse = adminapi.RecordedResponse
	// AcquireAttempt is one acquire call for a task.
	AcquireAttempt = adminapi.AcquireAttempt
	// Delegate is a registered delegate.
	Delegate = adminapi.Delegate
	// Faults are the faults injected into the manager endpoints.
	Faults = adminapi.Faults
)

// The states of a task.
const (
	// StateQueued: waiting to be acquired; offered to every matching delegate that polls.
	StateQueued TaskState = adminapi.TaskStateNameQueued
	// StateAcquired: a delegate holds it and has not answered yet.
	StateAcquired TaskState = adminapi.TaskStateNameAcquired
	// StateDone: a delegate answered it.
	StateDone TaskState = adminapi.TaskStateNameDone
	// StateAborted: aborted through the admin API before anyone answered it.
	StateAborted TaskState = adminapi.TaskStateNameAborted
)

// DefaultMaxEventsPerPoll is the number of events one task-events answer carries at most when
// Options.MaxEventsPerPoll is 0.
const DefaultMaxEventsPerPoll = 1000

// ErrTaskFinished is returned by Abort for a task a delegate has already answered.
var ErrTaskFinished = errors.New("task already answered")

// Options configures a Server.
type Options struct {
	// AccountID is the only account the server serves: Delegate JWEs must name it as their
	// subject and every manager call must carry it as accountId (a call naming another account is
	// refused with 401, one without accountId with 400). Required.
	AccountID string
	// AccountSecret is the account secret as 32 hex characters (a 16-byte key); Delegate JWEs must
	// be encrypted with it (alg dir, enc A128GCM). It may be empty when Tokens are given.
	AccountSecret string
	// Tokens are fixed Delegate tokens, accepted as they are besides JWEs.
	Tokens []string
	// Logger receives the server's logs; nil discards them. Tokens are never logged.
	Logger *slog.Logger
	// Now is the clock for token expiry, heartbeats, delegate timeouts and timestamps; nil means
	// time.Now. Tests that exercise DelegateTimeout pass a clock they move by hand.
	Now func() time.Time
	// DelegateTimeout, when positive, is how long a delegate may go without registering or sending
	// a heartbeat before it is considered lost: the tasks it acquired but never answered go back to
	// the queue, to be acquired again (acquisitions counting up), the way the real manager
	// re-broadcasts the tasks of a dead delegate. A lost delegate is offered no tasks until its next
	// heartbeat. 0 means delegates are never lost.
	DelegateTimeout time.Duration
	// MaxEventsPerPoll caps the events in one task-events answer; 0 means DefaultMaxEventsPerPoll.
	MaxEventsPerPoll int
	// LogToken is the token the mock log service (under LogServicePath) accepts, for AccountID
	// only; empty means a random one, read back with LogToken.
	LogToken string
	// LogLinkTTL is how long the mock log service's signed upload links work; 0 means
	// DefaultLogLinkTTL.
	LogLinkTTL time.Duration
}

// Server is the mock manager: the state of delegates and tasks, the manager API that runners talk
// to, and the admin API and Go methods that tests drive it with. Its methods are safe for
// concurrent use.
type Server struct {
	accountID       string
	secret          string
	key             []byte
	tokens          [][]byte
	log             *slog.Logger
	now             func() time.Time
	delegateTimeout time.Duration
	maxEvents       int
	rng             *lockedRand
	handler         *echo.Echo
	logs            *logService

	mu            sync.Mutex
	delegates     map[string]*delegate
	delegateOrder []*delegate
	// forgotten holds the delegates ForgetDelegates dropped: unknown to every call, but still the
	// holders of the tasks they acquired, until those go back to the queue.
	forgotten map[string]*delegate
	tasks     map[string]*task
	taskOrder []*task
	// pins maps a CI stage to the delegate its initialize task's answer named.
	pins   map[string]string
	faults Faults
	// changed is closed and replaced on every change of state, waking WaitTask.
	changed chan struct{}
}

// New returns a Server configured by opts. It fails with an error matching errs.ErrInvalidConfig
// when the account id is missing, the secret is not 32 hex characters, or neither a secret nor a
// token is given.
func New(opts Options) (*Server, error) {
	const op = "mock manager"
	if opts.AccountID == "" {
		return nil, errs.New(errs.CodeInvalidConfig, op, "AccountID is required")
	}
	var key []byte
	if opts.AccountSecret != "" {
		var err error
		key, err = hex.DecodeString(opts.AccountSecret)
		if err != nil || len(key) != 16 {
			return nil, errs.Newf(errs.CodeInvalidConfig, op,
				"AccountSecret must be 32 hex characters (a 16-byte key), got %d characters", len(opts.AccountSecret))
		}
	}
	if key == nil && len(opts.Tokens) == 0 {
		return nil, errs.New(errs.CodeInvalidConfig, op, "AccountSecret or Tokens is required to accept any Delegate token")
	}
	s := &Server{
		accountID:       opts.AccountID,
		secret:          opts.AccountSecret,
		key:             key,
		log:             opts.Logger,
		now:             opts.Now,
		delegateTimeout: opts.DelegateTimeout,
		maxEvents:       opts.MaxEventsPerPoll,
		rng:             newLockedRand(),
		delegates:       map[string]*delegate{},
		forgotten:       map[string]*delegate{},
		tasks:           map[string]*task{},
		pins:            map[string]string{},
		changed:         make(chan struct{}),
	}
	for _, t := range opts.Tokens {
		if t != "" {
			s.tokens = append(s.tokens, []byte(t))
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxEvents <= 0 {
		s.maxEvents = DefaultMaxEventsPerPoll
	}
	if opts.LogToken == "" {
		opts.LogToken = randomHex(16)
	}
	logs, err := newLogService(s.accountID, opts.LogToken, opts.LogLinkTTL, s.now)
	if err != nil {
		return nil, errs.Wrap(errs.CodeInvalidConfig, op, err)
	}
	s.logs = logs
	h, err := s.newHandler()
	if err != nil {
		return nil, errs.Wrap(errs.CodeInvalidConfig, op, err)
	}
	s.handler = h
	return s, nil
}

// Handler returns the HTTP handler serving the manager API, the mock log service under
// LogServicePath and, under /admin, the admin API.
func (s *Server) Handler() http.Handler { return s.handler }

// AccountID returns the account the server serves.
func (s *Server) AccountID() string { return s.accountID }

// AccountSecret returns the hex account secret Delegate JWEs must be encrypted with, or "" when
// only fixed tokens are accepted.
func (s *Server) AccountSecret() string { return s.secret }

// Enqueue queues a task and returns its id. The task is offered to every delegate that supports
// its type and carries all its tags. It fails with an error matching errs.ErrInvalidTaskData when
// the type is empty, the timeout negative or the data not JSON.
func (s *Server) Enqueue(nt NewTask) (string, error) {
	const op = "enqueue task"
	switch {
	case nt.Type == "":
		return "", errs.New(errs.CodeInvalidTaskData, op, "type is required")
	case nt.Timeout != nil && *nt.Timeout < 0:
		return "", errs.Newf(errs.CodeInvalidTaskData, op, "timeout must not be negative, got %d", *nt.Timeout)
	case nt.Data != nil && !json.Valid(*nt.Data):
		return "", errs.New(errs.CodeInvalidTaskData, op, "data is not valid JSON")
	}
	t := &task{
		id:        newID("task"),
		typ:       nt.Type,
		state:     StateQueued,
		createdAt: s.now().UTC(),
	}
	if nt.Data != nil {
		d := append(json.RawMessage(nil), *nt.Data...)
		t.data = &d
	}
	if nt.Timeout != nil {
		t.timeout = *nt.Timeout
	}
	if nt.RunnerResponse != nil {
		t.runnerResponse = *nt.RunnerResponse
	}
	if nt.Tags != nil {
		t.tags = append([]string(nil), *nt.Tags...)
	}
	t.stage = stageOf(t.typ, t.data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks[t.id] = t
	s.taskOrder = append(s.taskOrder, t)
	s.notifyLocked()
	return t.id, nil
}

// Task returns the task with the given id, or an error matching errs.ErrNotFound.
func (s *Server) Task(id string) (TaskStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(s.now())
	t, ok := s.tasks[id]
	if !ok {
		return TaskStatus{}, errUnknownTask(id)
	}
	return t.status(), nil
}

// Tasks returns every task, oldest first; given states, only the tasks in one of them.
func (s *Server) Tasks(states ...TaskState) []TaskStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(s.now())
	out := []TaskStatus{}
	for _, t := range s.taskOrder {
		if len(states) == 0 || slices.Contains(states, t.state) {
			out = append(out, t.status())
		}
	}
	return out
}

// Delegates returns every delegate that registered, in registration order.
func (s *Server) Delegates() []Delegate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delegate, 0, len(s.delegateOrder))
	for _, d := range s.delegateOrder {
		out = append(out, d.view())
	}
	return out
}

// Abort aborts a task: a queued one is withdrawn, an acquired one gets a DelegateTaskAbortEvent
// for the delegate holding it, delivered once with its next poll. Aborting an aborted task changes
// nothing. It fails with an error matching errs.ErrNotFound for an unknown task and ErrTaskFinished
// for one already answered.
func (s *Server) Abort(id string) (TaskStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(s.now())
	t, ok := s.tasks[id]
	if !ok {
		return TaskStatus{}, errUnknownTask(id)
	}
	switch t.state {
	case StateDone:
		return t.status(), fmt.Errorf("abort task %s: %w", id, ErrTaskFinished)
	case StateAcquired:
		if d, ok := s.delegates[t.acquiredBy]; ok {
			d.pendingAborts = append(d.pendingAborts, t)
		}
	}
	if t.state != StateAborted {
		t.state = StateAborted
		s.notifyLocked()
	}
	return t.status(), nil
}

// DeleteDelegate marks a delegate DELETED: its heartbeats are answered with that status, it is
// offered no more tasks and must register again. It fails with an error matching errs.ErrNotFound
// for an unknown delegate.
func (s *Server) DeleteDelegate(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.delegates[id]
	if !ok {
		return errs.New(errs.CodeNotFound, "delete delegate "+id, "no such delegate")
	}
	if d.status != adminapi.DelegateStatusDELETED {
		d.status = adminapi.DelegateStatusDELETED
		s.notifyLocked()
	}
	return nil
}

// ForgetDelegates makes the server forget every registered delegate, as a manager that restarts
// without its registrations does, while its tasks stay: a forgotten delegate's heartbeats are
// answered without a delegate, and its polls and acquires 404, so it must register again (and gets
// a new id, whatever its delegateRandomToken). The tasks it acquired and did not answer stay its
// own, so a result it still sends is taken, until DelegateTimeout after it was last seen, when
// they go back to the queue as a lost delegate's do; with no DelegateTimeout they stay acquired.
// Delegates still lists the forgotten delegates.
func (s *Server) ForgetDelegates() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, d := range s.delegates {
		s.forgotten[id] = d
		delete(s.delegates, id)
	}
	s.notifyLocked()
}

// SetFaults replaces the faults injected into the manager endpoints (the admin endpoints are never
// affected). Each call first waits a random time up to LatencyMs, then has its connection reset
// with probability ResetRate, else is answered 503 with probability ErrorRate. Rates outside
// [0, 1] or a latency outside [0, 60000] fail with an error matching errs.ErrInvalidConfig.
func (s *Server) SetFaults(f Faults) error {
	const op = "set faults"
	rate := func(name string, v *float32) error {
		if v != nil && (*v < 0 || *v > 1) {
			return errs.Newf(errs.CodeInvalidConfig, op, "%s must be within [0, 1], got %g", name, *v)
		}
		return nil
	}
	if err := rate("errorRate", f.ErrorRate); err != nil {
		return err
	}
	if err := rate("resetRate", f.ResetRate); err != nil {
		return err
	}
	if f.LatencyMs != nil && (*f.LatencyMs < 0 || *f.LatencyMs > 60000) {
		return errs.Newf(errs.CodeInvalidConfig, op, "latencyMs must be within [0, 60000], got %d", *f.LatencyMs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = copyFaults(f)
	return nil
}

// Faults returns the faults in force.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyFaults(s.faults)
}

// WaitTask waits until cond holds for the task and returns the status it held for. It fails with
// an error matching errs.ErrNotFound for an unknown task, or with ctx's error, alongside the last
// status seen, when ctx ends first. cond is called without any lock held.
func (s *Server) WaitTask(ctx context.Context, id string, cond func(TaskStatus) bool) (TaskStatus, error) {
	// Lost delegates are found when the state is looked at; with a timeout configured, look
	// regularly so a wait for a requeue ends even when no runner is polling.
	var tick <-chan time.Time
	if s.delegateTimeout > 0 {
		t := time.NewTicker(max(s.delegateTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		s.mu.Lock()
		s.reapLocked(s.now())
		t, ok := s.tasks[id]
		var st TaskStatus
		if ok {
			st = t.status()
		}
		changed := s.changed
		s.mu.Unlock()
		if !ok {
			return TaskStatus{}, errUnknownTask(id)
		}
		if cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("wait for task %s (state %s): %w", id, st.State, ctx.Err())
		case <-changed:
		case <-tick:
		}
	}
}

// WaitDone waits until the task is done (a delegate answered it) or aborted, and returns its
// status.
func (s *Server) WaitDone(ctx context.Context, id string) (TaskStatus, error) {
	return s.WaitTask(ctx, id, func(st TaskStatus) bool {
		return st.State == StateDone || st.State == StateAborted
	})
}

func errUnknownTask(id string) error {
	return errs.New(errs.CodeNotFound, "task "+id, "no such task")
}

func copyFaults(f Faults) Faults {
	var out Faults
	if f.ErrorRate != nil {
		out.ErrorRate = new(*f.ErrorRate)
	}
	if f.ResetRate != nil {
		out.ResetRate = new(*f.ResetRate)
	}
	if f.LatencyMs != nil {
		out.LatencyMs = new(*f.LatencyMs)
	}
	return out
}

// Compile-time proof that the API implementations fit the generated interfaces.
var (
	_ managerapi.StrictServerInterface = managerAPI{}
	_ adminapi.StrictServerInterface   = adminAPI{}
	_ logapi.StrictServerInterface     = logAPI{}
)
