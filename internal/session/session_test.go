package session_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/internal/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait of these tests; it only keeps a broken session from hanging the run.
const waitFor = 10 * time.Second

// fakeManager is a Registrar whose answers each test scripts. Registrations get the ids d-1, d-2…
type fakeManager struct {
	mu sync.Mutex
	// registerErrs are returned, in turn, by the first registrations.
	registerErrs []error
	registerCall int
	registered   []string
	// beat answers a heartbeat; nil answers ENABLED.
	beat  func(ctx context.Context, delegateID string) (manager.Heartbeat, error)
	beats []string
	// described are the task types of every Delegate the session sent.
	described [][]string
}

func (f *fakeManager) Register(_ context.Context, d manager.Delegate) (manager.Registration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.described = append(f.described, d.TaskTypes)
	f.registerCall++
	if f.registerCall <= len(f.registerErrs) {
		return manager.Registration{}, f.registerErrs[f.registerCall-1]
	}
	id := fmt.Sprintf("d-%d", len(f.registered)+1)
	f.registered = append(f.registered, id)
	return manager.Registration{DelegateID: id}, nil
}

func (f *fakeManager) Heartbeat(ctx context.Context, delegateID string, _ manager.Delegate) (manager.Heartbeat, error) {
	f.mu.Lock()
	f.beats = append(f.beats, delegateID)
	beat := f.beat
	f.mu.Unlock()
	if beat == nil {
		return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: delegateID}, nil
	}
	return beat(ctx, delegateID)
}

func (f *fakeManager) setBeat(beat func(ctx context.Context, delegateID string) (manager.Heartbeat, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beat = beat
}

func (f *fakeManager) counts() (registerCalls int, registered []string, beats []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registerCall, append([]string(nil), f.registered...), append([]string(nil), f.beats...)
}

// beatsFrom counts the heartbeats sent as delegateID.
func (f *fakeManager) beatsFrom(delegateID string) int {
	_, _, beats := f.counts()
	n := 0
	for _, b := range beats {
		if b == delegateID {
			n++
		}
	}
	return n
}

func answer(status manager.Status) func(context.Context, string) (manager.Heartbeat, error) {
	return func(_ context.Context, id string) (manager.Heartbeat, error) {
		return manager.Heartbeat{Status: status, DelegateID: id}, nil
	}
}

// logs keeps the messages a session logs, so tests can check what an operator is told.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) contains(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

func newSession(f *fakeManager, interval time.Duration, tune func(*session.Options)) (*session.Session, *logs) {
	l := &logs{}
	opts := session.Options{
		Manager:  f,
		Describe: func() manager.Delegate { return manager.Delegate{TaskTypes: []string{"A_TASK", "B_TASK"}} },
		Interval: interval,
		Backoff:  retry.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond},
		Logger:   slog.New(l),
	}
	if tune != nil {
		tune(&opts)
	}
	return session.New(opts), l
}

// heartbeats registers s and runs its heartbeat loop until the test ends.
func heartbeats(t *testing.T, s *session.Session) {
	t.Helper()
	require.NoError(t, s.Register(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunHeartbeats(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	})
}

// waitActive returns the delegate id the session lets the runner work as, failing the test when
// the session does not become active.
func waitActive(t *testing.T, s *session.Session) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	id, err := s.WaitActive(ctx)
	require.NoError(t, err)
	return id
}

// Registration is retried with backoff through failures until the manager accepts it.
func TestRegisterRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	f := &fakeManager{registerErrs: []error{errs.ErrManagerUnavailable, errs.ErrManagerUnavailable, errs.ErrUnauthorized}}
	s, l := newSession(f, time.Hour, nil)
	require.False(t, s.State().Active(), "no work before the first registration")

	require.NoError(t, s.Register(t.Context()))
	calls, registered, _ := f.counts()
	require.Equal(t, 4, calls)
	require.Equal(t, []string{"d-1"}, registered)
	st := s.State()
	require.Equal(t, "d-1", st.DelegateID)
	require.True(t, st.Active())
	require.Equal(t, 1, st.Registrations)
	require.True(t, l.contains("registration failed; retrying"))
}

// A registration refused for the runner's credentials is an error in the log and waits
// UnauthorizedBackoff; other failures keep the usual backoff.
func TestRefusedCredentialsAreRetriedSlowly(t *testing.T) {
	t.Parallel()
	f := &fakeManager{registerErrs: []error{errs.ErrManagerUnavailable, errs.ErrUnauthorized, errs.ErrUnauthorized}}
	s, l := newSession(f, time.Hour, func(o *session.Options) {
		o.UnauthorizedBackoff = retry.Policy{Initial: time.Hour, Max: time.Hour}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Register(ctx) }()
	require.Eventually(t, func() bool { calls, _, _ := f.counts(); return calls == 2 }, 10*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	calls, _, _ := f.counts()
	require.Equal(t, 2, calls, "a refused registration waits for the slow backoff")
	require.True(t, l.contains("registration refused"))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// Registration gives up only when its context ends.
func TestRegisterStopsWithItsContext(t *testing.T) {
	t.Parallel()
	f := &fakeManager{registerErrs: make([]error, 1<<20)}
	for i := range f.registerErrs {
		f.registerErrs[i] = errs.ErrManagerUnavailable
	}
	s, _ := newSession(f, time.Hour, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Register(ctx), context.DeadlineExceeded)
	require.Empty(t, s.State().DelegateID)
	calls, _, _ := f.counts()
	require.Greater(t, calls, 1, "failed registrations are retried")
}

// A heartbeat answered DELETED, or without a delegate (a null resource), makes the session
// register again and carry on under the new delegate id.
func TestForgottenDelegateRegistersAgain(t *testing.T) {
	t.Parallel()
	for _, status := range []manager.Status{manager.StatusDeleted, manager.StatusUnknown} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			f := &fakeManager{}
			s, _ := newSession(f, 10*time.Millisecond, nil)
			f.setBeat(func(_ context.Context, id string) (manager.Heartbeat, error) {
				if id == "d-1" {
					return manager.Heartbeat{Status: status}, nil
				}
				return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: id}, nil
			})
			heartbeats(t, s)
			require.Eventually(t, func() bool { return f.beatsFrom("d-2") > 0 }, waitFor, time.Millisecond)
			require.Equal(t, "d-2", waitActive(t, s))
			st := s.State()
			require.Equal(t, 2, st.Registrations)
		})
	}
}

// A run of failed heartbeats (MaxFailures in a row) makes the session register again; fewer do
// not.
func TestFailedHeartbeatsRegisterAgain(t *testing.T) {
	t.Parallel()
	f := &fakeManager{}
	s, _ := newSession(f, 5*time.Millisecond, func(o *session.Options) { o.MaxFailures = 3 })
	var mu sync.Mutex
	failures := 0
	f.setBeat(func(_ context.Context, id string) (manager.Heartbeat, error) {
		mu.Lock()
		defer mu.Unlock()
		// d-1: two failures, a success, then failures for good; d-2 is fine.
		if id == "d-1" {
			failures++
			if failures != 3 {
				return manager.Heartbeat{}, errs.ErrManagerUnavailable
			}
		}
		return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: id}, nil
	})
	heartbeats(t, s)
	require.Eventually(t, func() bool { return f.beatsFrom("d-2") > 0 }, waitFor, time.Millisecond)
	// Two failures, one success (resetting the count), then three failures: six beats as d-1.
	require.Equal(t, 6, f.beatsFrom("d-1"))
	require.Equal(t, "d-2", waitActive(t, s))
}

// A heartbeat that hangs is cut off by the per-call timeout and counts as a failure.
func TestHeartbeatCallTimeout(t *testing.T) {
	t.Parallel()
	f := &fakeManager{}
	s, _ := newSession(f, 5*time.Millisecond, func(o *session.Options) {
		o.CallTimeout = 20 * time.Millisecond
		o.MaxFailures = 2
	})
	f.setBeat(func(ctx context.Context, id string) (manager.Heartbeat, error) {
		if id == "d-1" {
			<-ctx.Done() // the manager never answers
			return manager.Heartbeat{}, errs.Wrap(errs.CodeManagerUnavailable, "heartbeat", ctx.Err())
		}
		return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: id}, nil
	})
	heartbeats(t, s)
	require.Eventually(t, func() bool { return f.beatsFrom("d-2") > 0 }, waitFor, time.Millisecond)
	require.Equal(t, 2, f.beatsFrom("d-1"))
}

// WAITING_FOR_APPROVAL is logged and keeps the runner from taking work, without registering
// again, until a heartbeat says ENABLED.
func TestWaitingForApprovalTakesNoWorkUntilEnabled(t *testing.T) {
	t.Parallel()
	f := &fakeManager{}
	s, l := newSession(f, 5*time.Millisecond, nil)
	f.setBeat(answer(manager.StatusWaitingForApproval))
	heartbeats(t, s)
	require.Eventually(t, func() bool { return s.State().Status == manager.StatusWaitingForApproval }, waitFor, time.Millisecond)
	require.True(t, l.contains("waiting for approval"))

	// While waiting, WaitActive does not hand out the delegate id.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.WaitActive(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Approval lets the runner work under the same registration.
	waiting := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		id, _ := s.WaitActive(ctx)
		waiting <- id
	}()
	f.setBeat(answer(manager.StatusEnabled))
	require.Equal(t, "d-1", <-waiting)
	require.True(t, l.contains("enabled this runner"))
	_, registered, _ := f.counts()
	require.Equal(t, []string{"d-1"}, registered, "waiting for approval is no reason to register again")
}

// Stale makes the session register again at once, without waiting for the next heartbeat.
func TestStaleRegistersAgainAtOnce(t *testing.T) {
	t.Parallel()
	f := &fakeManager{}
	s, _ := newSession(f, time.Hour, nil)
	heartbeats(t, s)
	s.Stale("d-1", "poll answered 404")
	require.Eventually(t, func() bool { return s.State().DelegateID == "d-2" }, waitFor, time.Millisecond)
	require.Equal(t, "d-2", waitActive(t, s))
}

// One loss of the registration makes one new registration, even when both the poller (a 404)
// and a heartbeat (DELETED) notice it, and a report about a registration already replaced is
// ignored.
func TestOneLossRegistersOnce(t *testing.T) {
	t.Parallel()
	f := &fakeManager{}
	s, _ := newSession(f, 10*time.Millisecond, nil)
	inBeat, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.setBeat(func(_ context.Context, id string) (manager.Heartbeat, error) {
		if id == "d-1" {
			once.Do(func() { close(inBeat) })
			<-release
			return manager.Heartbeat{Status: manager.StatusDeleted}, nil
		}
		return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: id}, nil
	})
	heartbeats(t, s)

	// The poller hears of the loss while the heartbeat that will report it is under way.
	<-inBeat
	s.Stale("d-1", "poll answered 404")
	close(release)
	require.Eventually(t, func() bool { return f.beatsFrom("d-2") > 0 }, waitFor, time.Millisecond)
	// A late poll made with the old id must not cost the new registration either.
	s.Stale("d-1", "a late poll answered 404")
	n := f.beatsFrom("d-2")
	require.Eventually(t, func() bool { return f.beatsFrom("d-2") > n }, waitFor, time.Millisecond)

	_, registered, _ := f.counts()
	require.Equal(t, []string{"d-1", "d-2"}, registered)
	require.Equal(t, "d-2", waitActive(t, s))
}
