package reporter_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/internal/spool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sender fails with the queued errors, then accepts.
type sender struct {
	mu       sync.Mutex
	failures []error
	got      []manager.Result
	calls    int
}

func (s *sender) Report(_ context.Context, r manager.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if len(s.failures) > 0 {
		err := s.failures[0]
		s.failures = s.failures[1:]
		return err
	}
	s.got = append(s.got, r)
	return nil
}

func (s *sender) delivered() []manager.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]manager.Result(nil), s.got...)
}

var fast = retry.Policy{Initial: time.Millisecond, Max: 5 * time.Millisecond}

func start(t *testing.T, opts reporter.Options) (*reporter.Reporter, context.CancelFunc) {
	t.Helper()
	if opts.Backoff.Initial == 0 {
		opts.Backoff = fast
	}
	r := reporter.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := r.Start(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { cancel(); r.Wait() })
	return r, cancel
}

func flush(t *testing.T, r *reporter.Reporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Flush(ctx))
}

func TestRetriesRetryableFailures(t *testing.T) {
	t.Parallel()
	s := &sender{failures: []error{errs.ErrManagerUnavailable, errs.ErrManagerUnavailable}}
	sp, err := spool.Open(t.TempDir(), nil)
	require.NoError(t, err)
	defer sp.Close()
	var outcomes []reporter.Outcome
	r, _ := start(t, reporter.Options{Sender: s, Spool: sp, OnDone: func(_ manager.Result, o reporter.Outcome) { outcomes = append(outcomes, o) }})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	flush(t, r)
	require.Len(t, s.delivered(), 1)
	require.Equal(t, 3, s.calls)
	require.Equal(t, 0, sp.Len(), "a delivered result leaves the spool")
	require.Equal(t, []reporter.Outcome{reporter.Delivered}, outcomes)
}

func TestGivesUpOnPermanentFailureAndSaysSo(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &sender{failures: []error{errs.New(errs.CodeManagerRejected, "send status", "400 bad")}}
	sp, err := spool.Open(t.TempDir(), nil)
	require.NoError(t, err)
	defer sp.Close()
	r, _ := start(t, reporter.Options{Sender: s, Spool: sp, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	flush(t, r)
	require.Equal(t, 1, s.calls, "a 4xx is not retried")
	require.Empty(t, s.delivered())
	require.Equal(t, 0, sp.Len())
	require.Contains(t, logs.String(), "result LOST: the manager refused it for good")
	require.Contains(t, logs.String(), "task_id=t-1")
}

func TestExpiredResultsAreGivenUp(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Minute) // every look at the clock is a minute later
		return now
	}
	s := &sender{failures: []error{errs.ErrManagerUnavailable, errs.ErrManagerUnavailable, errs.ErrManagerUnavailable, errs.ErrManagerUnavailable}}
	r, _ := start(t, reporter.Options{Sender: s, TTL: 3 * time.Minute, Now: clock, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	flush(t, r)
	require.Empty(t, s.delivered())
	require.Contains(t, logs.String(), "did not accept it before it expired")
}

func TestUndeliveredResultsSurviveARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	require.NoError(t, err)
	down := &sender{failures: make([]error, 1000)}
	for i := range down.failures {
		down.failures[i] = errs.ErrManagerUnavailable
	}
	r, stop := start(t, reporter.Options{Sender: down, Spool: sp})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeFailed, Error: "exit status 1"})
	require.Equal(t, 1, sp.Len())
	stop()
	r.Wait()
	require.NoError(t, sp.Close())

	sp2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer sp2.Close()
	up := &sender{}
	r2 := reporter.New(reporter.Options{Sender: up, Spool: sp2, Backoff: fast})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r2.Wait() }()
	n, err := r2.Start(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	flush(t, r2)
	require.Equal(t, []manager.Result{{TaskID: "t-1", Code: manager.CodeFailed, Error: "exit status 1"}}, up.delivered())
	require.Equal(t, 0, sp2.Len())
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	s := &sender{failures: []error{&errs.Error{Code: errs.CodeManagerUnavailable, Status: 429, RetryAfter: 300 * time.Millisecond}}}
	r, _ := start(t, reporter.Options{Sender: s})
	began := time.Now()
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	flush(t, r)
	// Not a speed assertion: the reporter must not have retried before the wait the manager asked for.
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)
	require.Len(t, s.delivered(), 1)
}

// hour is a backoff no test waits out: a result tried again within a test was woken.
var hour = retry.Policy{Initial: time.Hour, Max: time.Hour}

// failOnce delivers one result to a reporter whose sender fails the first try with failure, and
// returns once that try was made.
func failOnce(t *testing.T, failure error, backoff retry.Policy) (*reporter.Reporter, *sender) {
	t.Helper()
	s := &sender{failures: []error{failure}}
	r, _ := start(t, reporter.Options{Sender: s, Backoff: backoff})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.calls == 1 }, 10*time.Second, time.Millisecond)
	return r, s
}

func TestAnAnswerFromTheManagerEndsTheWaitOfFailedResults(t *testing.T) {
	t.Parallel()
	r, s := failOnce(t, errs.ErrManagerUnavailable, hour)
	r.ManagerAnswered()
	require.Eventually(t, func() bool { return len(s.delivered()) == 1 }, 10*time.Second, time.Millisecond,
		"the result is tried again at once, not after an hour")
}

func TestFlushTriesWaitingResultsAtOnce(t *testing.T) {
	t.Parallel()
	r, s := failOnce(t, errs.ErrManagerUnavailable, hour)
	flush(t, r)
	require.Len(t, s.delivered(), 1)
}

func TestRetryAfterOutlastsAnAnswer(t *testing.T) {
	t.Parallel()
	r, s := failOnce(t, &errs.Error{Code: errs.CodeManagerUnavailable, RetryAfter: time.Hour}, fast)
	r.ManagerAnswered()
	time.Sleep(100 * time.Millisecond)
	require.Empty(t, s.delivered(), "the manager asked for an hour")
}

// A result the manager takes before SyncDelay is written to the spool and removed, never synced;
// one that waits longer is synced once; with no delay every result is synced before it is sent.
func TestResultsAreSyncedOnlyWhenDeliveryWaits(t *testing.T) {
	t.Parallel()
	t.Run("delivered at once", func(t *testing.T) {
		t.Parallel()
		sp, err := spool.Open(t.TempDir(), nil)
		require.NoError(t, err)
		defer sp.Close()
		s := &sender{}
		r, _ := start(t, reporter.Options{Sender: s, Spool: sp, SyncDelay: time.Hour})
		for _, id := range []string{"t-1", "t-2", "t-3"} {
			r.Deliver(manager.Result{TaskID: id, Code: manager.CodeOK})
		}
		require.Eventually(t, func() bool { return r.Pending() == 0 }, 10*time.Second, time.Millisecond)
		require.Len(t, s.delivered(), 3)
		require.Zero(t, sp.Len())
		require.Zero(t, sp.Syncs())
	})
	t.Run("left waiting", func(t *testing.T) {
		t.Parallel()
		sp, err := spool.Open(t.TempDir(), nil)
		require.NoError(t, err)
		defer sp.Close()
		s := &sender{failures: []error{errs.ErrManagerUnavailable, errs.ErrManagerUnavailable, errs.ErrManagerUnavailable}}
		r, _ := start(t, reporter.Options{Sender: s, Spool: sp, SyncDelay: 20 * time.Millisecond,
			Backoff: retry.Policy{Initial: time.Hour, Max: time.Hour}})
		r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
		require.Equal(t, 1, sp.Len(), "written before it is sent")
		require.Eventually(t, func() bool { return sp.Syncs() == 1 }, 10*time.Second, time.Millisecond)
		require.Empty(t, s.delivered())
	})
	t.Run("no delay", func(t *testing.T) {
		t.Parallel()
		sp, err := spool.Open(t.TempDir(), nil)
		require.NoError(t, err)
		defer sp.Close()
		s := &sender{}
		r, _ := start(t, reporter.Options{Sender: s, Spool: sp})
		r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
		require.Equal(t, 1, sp.Syncs(), "synced before Deliver returns")
		flush(t, r)
		require.Len(t, s.delivered(), 1)
	})
}

// A runner that stops with results undelivered makes them durable before it waits for them.
func TestFlushSyncsWhatIsPending(t *testing.T) {
	t.Parallel()
	sp, err := spool.Open(t.TempDir(), nil)
	require.NoError(t, err)
	defer sp.Close()
	s := &sender{failures: []error{errs.ErrManagerUnavailable}}
	r, _ := start(t, reporter.Options{Sender: s, Spool: sp, SyncDelay: time.Hour,
		Backoff: retry.Policy{Initial: time.Hour, Max: time.Hour}})
	r.Deliver(manager.Result{TaskID: "t-1", Code: manager.CodeOK})
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.calls == 1
	}, 10*time.Second, time.Millisecond)
	require.Zero(t, sp.Syncs())
	flush(t, r)
	require.Equal(t, 1, sp.Syncs())
	require.Len(t, s.delivered(), 1)
}
