package session

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
)

// Registrar is the part of a manager a session talks to.
type Registrar interface {
	Register(ctx context.Context, d manager.Delegate) (manager.Registration, error)
	Heartbeat(ctx context.Context, delegateID string, d manager.Delegate) (manager.Heartbeat, error)
}

// Options configure a Session.
type Options struct {
	Manager Registrar
	// Describe returns what the runner says of itself now (running tasks, time).
	Describe func() manager.Delegate
	// Interval is the time between heartbeats, jittered by ±10%.
	Interval time.Duration
	// CallTimeout bounds one heartbeat or registration call. Default: Interval, at least 10s and
	// at most 30s.
	CallTimeout time.Duration
	// MaxFailures is how many heartbeats in a row may fail before the runner registers again.
	// Default 5. A manager may take a new registration for a new delegate and re-queue the
	// unanswered tasks of the old one, so a task whose result is still on its way could run
	// twice: a short run of failures (a flaky network, a manager restarting) must not cost the
	// registration, and the first heartbeat that gets through says whether the manager still
	// knows the runner.
	MaxFailures int
	// Backoff is the wait between failed registrations. Default 1s doubling to 1m.
	Backoff retry.Policy
	// UnauthorizedBackoff, when set, is the wait after a registration the manager refused for
	// the runner's credentials (errs.CodeUnauthorized), which do not fix themselves: a slow retry
	// for an operator to fix them. Default Backoff.
	UnauthorizedBackoff retry.Policy
	Logger              *slog.Logger
	Now                 func() time.Time
}

// State is a snapshot of the session.
type State struct {
	// DelegateID is the id of the current registration; empty before the first one.
	DelegateID string
	// Status is the manager's view of the delegate from the last registration or heartbeat.
	Status manager.Status
	// LastHeartbeat is when the manager last answered a heartbeat (or registration).
	LastHeartbeat time.Time
	// Registrations counts successful registrations.
	Registrations int
}

// Active reports whether the runner may take work: it is registered and the manager has it
// enabled.
func (s State) Active() bool { return s.DelegateID != "" && s.Status == manager.StatusEnabled }

// Session holds the runner's registration.
type Session struct {
	opts    Options
	logger  *slog.Logger
	mu      sync.Mutex
	state   State
	changed chan struct{}
	// stale asks the heartbeat loop to register again without waiting for its next beat; it
	// carries the delegate id the manager no longer knows.
	stale chan string
}

// New returns a session that is not registered yet.
func New(opts Options) *Session {
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 5
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = min(max(opts.Interval, 10*time.Second), 30*time.Second)
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff = retry.Policy{Initial: time.Second, Max: time.Minute}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Session{
		opts:    opts,
		logger:  opts.Logger,
		changed: make(chan struct{}),
		stale:   make(chan string, 1),
	}
}

// State returns a snapshot of the session.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Changed returns a channel that is closed at the next change of the session's state.
func (s *Session) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitActive blocks until the runner may take work and returns its delegate id, or returns
// ctx.Err() when ctx ends first.
func (s *Session) WaitActive(ctx context.Context) (string, error) {
	for {
		s.mu.Lock()
		st, changed := s.state, s.changed
		s.mu.Unlock()
		if st.Active() {
			return st.DelegateID, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Stale tells the session that the manager no longer knows delegateID (for example, a poll made
// as delegateID answered 404): the heartbeat loop registers again at once. A report about a
// registration that has been replaced since is ignored, so one loss never costs two registrations.
func (s *Session) Stale(delegateID, reason string) {
	if delegateID == "" || delegateID != s.State().DelegateID {
		return
	}
	select {
	case s.stale <- delegateID:
		s.logger.Warn("manager no longer knows this runner; registering again", "reason", reason, "delegate_id", delegateID)
	default:
	}
}

func (s *Session) update(f func(*State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.state)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Register registers the runner, retrying with backoff until it succeeds or ctx ends.
func (s *Session) Register(ctx context.Context) error {
	return s.register(ctx, s.opts.Backoff)
}

func (s *Session) register(ctx context.Context, backoff retry.Policy) error {
	if s.opts.UnauthorizedBackoff.Initial <= 0 {
		return retry.Until(ctx, backoff, s.registerOnce, nil, s.registrationFailed)
	}
	failures, refusals := backoff.NewBackOff(), s.opts.UnauthorizedBackoff.NewBackOff()
	for {
		err := s.registerOnce(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := retry.Next(failures, err)
		if errs.CodeOf(err) == errs.CodeUnauthorized {
			wait = retry.Next(refusals, err)
		}
		s.registrationFailed(err, wait)
		if err := retry.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// registrationFailed logs a failed registration: an error when the manager refused the runner's
// credentials, which only an operator can fix, a warning otherwise.
func (s *Session) registrationFailed(err error, wait time.Duration) {
	if errs.CodeOf(err) == errs.CodeUnauthorized {
		s.logger.Error("registration refused: the manager does not accept the runner's credentials; fix them. Retrying slowly",
			"err", err, "retry_in", wait.Round(time.Millisecond))
		return
	}
	s.logger.Warn("registration failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
}

func (s *Session) registerOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	d := s.opts.Describe()
	reg, err := s.opts.Manager.Register(ctx, d)
	if err != nil {
		return err
	}
	prev := s.State().DelegateID
	s.update(func(st *State) {
		st.DelegateID = reg.DelegateID
		st.Status = manager.StatusEnabled
		st.LastHeartbeat = s.opts.Now()
		st.Registrations++
	})
	attrs := []any{"delegate_id", reg.DelegateID, "task_types", d.TaskTypes, "capacity", d.Capacity}
	if prev != "" && prev != reg.DelegateID {
		attrs = append(attrs, "previous_delegate_id", prev)
	}
	if reg.Action != "" {
		attrs = append(attrs, "manager_action", reg.Action)
	}
	s.logger.Info("registered with the manager", attrs...)
	return nil
}

// RunHeartbeats sends heartbeats until ctx ends and registers again when the manager deletes or
// forgets the delegate, or when MaxFailures heartbeats in a row fail. It returns ctx.Err().
func (s *Session) RunHeartbeats(ctx context.Context) error {
	failures := 0
	// The first heartbeat goes out at once: a runner that waits for approval learns it before it
	// has polled for long.
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id := <-s.stale:
			if id != s.State().DelegateID {
				// A heartbeat found the loss first and the runner has registered again since.
				continue
			}
			s.markUnregistered(manager.StatusUnknown)
			if err := s.registerAgain(ctx); err != nil {
				return err
			}
			failures = 0
		case <-timer.C:
			if s.beat(ctx, &failures) {
				if err := s.registerAgain(ctx); err != nil {
					return err
				}
				failures = 0
			}
		}
		timer.Reset(retry.Jitter(beatDelay(s.opts.Interval, failures), 0.1))
	}
}

// beatDelay is the wait before the next heartbeat after failures heartbeats in a row failed: a
// quarter of the interval after the first failure and half after the second, then the interval
// again. A manager takes a runner it has not heard from for a while for dead and hands its tasks
// to others, which would run them a second time; trying again soon after a failure keeps a
// runner in touch through a flaky network, while a long outage costs the manager no more calls
// than the heartbeats it missed.
func beatDelay(interval time.Duration, failures int) time.Duration {
	switch failures {
	case 1:
		return interval / 4
	case 2:
		return interval / 2
	default:
		return interval
	}
}

// registerAgain registers a runner that was registered already and may hold work. Its backoff is
// capped at the heartbeat interval rather than Backoff's: a runner that goes quiet for a minute
// looks dead to the manager, which would hand its tasks to others.
func (s *Session) registerAgain(ctx context.Context) error {
	return s.register(ctx, reregisterBackoff(s.opts.Backoff, s.opts.Interval))
}

// reregisterBackoff is Backoff with its waits capped at the heartbeat interval, starting at a
// quarter of it at most.
func reregisterBackoff(p retry.Policy, interval time.Duration) retry.Policy {
	return retry.Policy{Initial: min(p.Initial, interval/4), Max: min(p.Max, interval)}
}

// beat sends one heartbeat and reports whether the runner must register again.
func (s *Session) beat(ctx context.Context, failures *int) (reregister bool) {
	st := s.State()
	callCtx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	hb, err := s.opts.Manager.Heartbeat(callCtx, st.DelegateID, s.opts.Describe())
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		*failures++
		s.logger.Warn("heartbeat failed", "err", err, "failures_in_a_row", *failures, "limit", s.opts.MaxFailures)
		if *failures >= s.opts.MaxFailures {
			s.logger.Warn("too many failed heartbeats; registering again", "failures_in_a_row", *failures)
			return true
		}
		return false
	}
	*failures = 0
	switch hb.Status {
	case manager.StatusDeleted, manager.StatusUnknown:
		s.logger.Warn("manager does not know this runner any more; registering again",
			"status", hb.Status, "delegate_id", st.DelegateID)
		s.markUnregistered(hb.Status)
		return true
	}
	if hb.Status != st.Status {
		switch hb.Status {
		case manager.StatusEnabled:
			s.logger.Info("manager enabled this runner; taking work", "delegate_id", st.DelegateID)
		case manager.StatusWaitingForApproval:
			s.logger.Warn("runner is waiting for approval on the manager; taking no work until approved", "delegate_id", st.DelegateID)
		default:
			s.logger.Warn("manager reports this runner is not enabled; taking no work", "status", hb.Status, "delegate_id", st.DelegateID)
		}
	}
	s.update(func(st *State) {
		st.Status = hb.Status
		st.LastHeartbeat = s.opts.Now()
	})
	return false
}

// markUnregistered stops work being taken under a registration the manager no longer honours.
func (s *Session) markUnregistered(status manager.Status) {
	s.update(func(st *State) { st.Status = status })
}
