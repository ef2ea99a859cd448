package reporter_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

// label names a record in the tests: "t-1/0" is task t-1's outcome, "t-1/2" its second update.
func label(r manager.Result) string { return fmt.Sprintf("%s/%d", r.TaskID, r.Update) }

// scripted fails each record with the errors queued for its label, then accepts it. It keeps
// every attempt and every delivery in the order they came.
type scripted struct {
	mu        sync.Mutex
	failures  map[string][]error
	attempts  []string
	delivered []string
}

func (s *scripted) Report(_ context.Context, r manager.Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := label(r)
	s.attempts = append(s.attempts, l)
	if q := s.failures[l]; len(q) > 0 {
		s.failures[l] = q[1:]
		return q[0]
	}
	s.delivered = append(s.delivered, l)
	return nil
}

func (s *scripted) tried() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.attempts...)
}

func (s *scripted) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.delivered...)
}

// triedOnce waits until the sender has seen l.
func (s *scripted) triedOnce(t *testing.T, l string) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range s.attempts {
			if a == l {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond)
}

func update(taskID string, n int) manager.Result {
	return manager.Result{TaskID: taskID, TaskType: "DRONE_STAGE", Update: n, Data: []byte(fmt.Sprintf(`{"n":%d}`, n))}
}

func outcome(taskID string) manager.Result {
	return manager.Result{TaskID: taskID, TaskType: "DRONE_STAGE", Code: manager.CodeOK}
}

func unavailable(n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = errs.ErrManagerUnavailable
	}
	return out
}

// A task's second update and its outcome are not tried before its first update is delivered, and
// the three reach the manager in their order.
func TestATasksRecordsGoInTheirOrder(t *testing.T) {
	t.Parallel()
	const n = 5
	s := &scripted{failures: map[string][]error{"t-1/1": unavailable(n)}}
	sp, err := spool.Open(t.TempDir(), nil)
	require.NoError(t, err)
	defer sp.Close()
	r, _ := start(t, reporter.Options{Sender: s, Spool: sp})
	r.Deliver(update("t-1", 1))
	r.Deliver(update("t-1", 2))
	r.Deliver(outcome("t-1"))
	flush(t, r)

	want := []string{}
	for range n + 1 {
		want = append(want, "t-1/1")
	}
	require.Equal(t, append(want, "t-1/2", "t-1/0"), s.tried(), "nothing of the task is tried while its first update waits")
	require.Equal(t, []string{"t-1/1", "t-1/2", "t-1/0"}, s.got())
	require.Zero(t, sp.Len())
}

// The records of other tasks do not wait for a task whose update waits to be tried again.
func TestOtherTasksDoNotWait(t *testing.T) {
	t.Parallel()
	s := &scripted{failures: map[string][]error{"t-1/1": unavailable(1)}}
	r, _ := start(t, reporter.Options{Sender: s, Backoff: hour})
	r.Deliver(update("t-1", 1))
	r.Deliver(outcome("t-1"))
	s.triedOnce(t, "t-1/1")
	r.Deliver(outcome("t-2"))
	require.Eventually(t, func() bool { return len(s.got()) == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{"t-2/0"}, s.got())
	require.Equal(t, []string{"t-1/1", "t-2/0"}, s.tried(), "t-1's outcome waits for its update")

	r.ManagerAnswered()
	flush(t, r)
	require.Equal(t, []string{"t-2/0", "t-1/1", "t-1/0"}, s.got())
}

// An update the manager refuses for good is logged as a lost update, and the task's next records
// go on.
func TestARefusedUpdateDoesNotHoldTheNextBack(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &scripted{failures: map[string][]error{"t-1/1": {errs.New(errs.CodeManagerRejected, "send update", "400 bad")}}}
	var mu sync.Mutex
	var done []string
	r, _ := start(t, reporter.Options{Sender: s, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnDone: func(res manager.Result, o reporter.Outcome) {
			mu.Lock()
			defer mu.Unlock()
			done = append(done, label(res)+" "+string(o))
		}})
	r.Deliver(update("t-1", 1))
	r.Deliver(update("t-1", 2))
	r.Deliver(outcome("t-1"))
	flush(t, r)
	require.Equal(t, []string{"t-1/1", "t-1/2", "t-1/0"}, s.tried())
	require.Equal(t, []string{"t-1/2", "t-1/0"}, s.got())
	require.Contains(t, logs.String(), "update LOST: the manager refused it for good")
	require.Contains(t, logs.String(), "update=1")
	require.NotContains(t, logs.String(), "result LOST")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"t-1/1 rejected", "t-1/2 delivered", "t-1/0 delivered"}, done)
}

// Records of a task stored out of order (updates sent from several goroutines, say) are delivered
// after a restart by their update number, the outcome last.
func TestKeptRecordsGoInUpdateOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	require.NoError(t, err)
	at := time.Now().Add(-time.Minute)
	for i, res := range []manager.Result{outcome("t-1"), update("t-1", 3), outcome("t-2"), update("t-1", 1), update("t-1", 2)} {
		_, err := sp.Put(res, at.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
	}
	require.NoError(t, sp.Close())

	sp, err = spool.Open(dir, nil)
	require.NoError(t, err)
	defer sp.Close()
	// The first of t-1's records fails twice: were the others not waiting for it, they would
	// reach the manager before it.
	s := &scripted{failures: map[string][]error{"t-1/1": unavailable(2)}}
	r := reporter.New(reporter.Options{Sender: s, Spool: sp, Backoff: fast})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Wait() }()
	n, err := r.Start(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	flush(t, r)

	var t1 []string
	for _, l := range s.got() {
		if l != "t-2/0" {
			t1 = append(t1, l)
		}
	}
	require.Equal(t, []string{"t-1/1", "t-1/2", "t-1/3", "t-1/0"}, t1)
	require.Contains(t, s.got(), "t-2/0")
	require.Zero(t, sp.Len())
}

// A record waiting for its turn when the runner stops stays in the spool, untried, and the next
// start delivers it after the record it waited for.
func TestAWaitingRecordStaysInTheSpoolAtAStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	require.NoError(t, err)
	var logs syncbuf.Buffer
	s := &scripted{failures: map[string][]error{"t-1/1": unavailable(1)}}
	r, stop := start(t, reporter.Options{Sender: s, Spool: sp, Backoff: hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r.Deliver(update("t-1", 1))
	r.Deliver(outcome("t-1"))
	s.triedOnce(t, "t-1/1")
	stop()
	r.Wait()
	require.Equal(t, []string{"t-1/1"}, s.tried(), "the outcome was never tried")
	require.Equal(t, 2, sp.Len(), "both records are kept")
	require.Contains(t, logs.String(), "runner stopping; result stays in the spool for the next start")
	require.Contains(t, logs.String(), "runner stopping; update stays in the spool for the next start")
	require.NoError(t, sp.Close())

	sp, err = spool.Open(dir, nil)
	require.NoError(t, err)
	defer sp.Close()
	s2 := &scripted{}
	r2, _ := start(t, reporter.Options{Sender: s2, Spool: sp})
	flush(t, r2)
	require.Equal(t, []string{"t-1/1", "t-1/0"}, s2.got())
	require.Zero(t, sp.Len())
}

// HasOutcome holds while an outcome of the task is pending, handed to Deliver or kept in the
// spool from an earlier run; updates do not count.
func TestHasOutcome(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	require.NoError(t, err)
	s := &scripted{failures: map[string][]error{"t-1/1": unavailable(1)}}
	r, stop := start(t, reporter.Options{Sender: s, Spool: sp, Backoff: hour})
	require.False(t, r.HasOutcome("t-1"))
	r.Deliver(update("t-1", 1))
	s.triedOnce(t, "t-1/1")
	require.False(t, r.HasOutcome("t-1"), "an update is no outcome")
	r.Deliver(outcome("t-1"))
	require.True(t, r.HasOutcome("t-1"))
	require.False(t, r.HasOutcome("t-2"))
	stop()
	r.Wait()
	require.NoError(t, sp.Close())

	sp, err = spool.Open(dir, nil)
	require.NoError(t, err)
	defer sp.Close()
	s2 := &scripted{failures: map[string][]error{"t-1/1": unavailable(1)}}
	r2, _ := start(t, reporter.Options{Sender: s2, Spool: sp, Backoff: hour})
	require.True(t, r2.HasOutcome("t-1"), "loaded from the spool")
	s2.triedOnce(t, "t-1/1")
	flush(t, r2)
	require.Equal(t, []string{"t-1/1", "t-1/0"}, s2.got())
	require.False(t, r2.HasOutcome("t-1"), "delivered")
}
