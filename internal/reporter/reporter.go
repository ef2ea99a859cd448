package reporter

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/internal/spool"
)

// Sender is the part of a manager the reporter talks to.
type Sender interface {
	Report(ctx context.Context, r manager.Result) error
}

// Outcome is how a delivery ended, for observers.
type Outcome string

// The ends a delivery can come to.
const (
	Delivered Outcome = "delivered"
	Rejected  Outcome = "rejected"
	Expired   Outcome = "expired"
)

// Options configure a Reporter.
type Options struct {
	Sender Sender
	// Spool keeps results across crashes; nil keeps them in memory only.
	Spool *spool.Spool
	// SyncDelay is how long a spooled result may wait for delivery before it is fsynced. A
	// result is always written to the spool before it is sent, which a crash of the process
	// cannot undo; only one still undelivered after SyncDelay (or when the runner stops) is made
	// to survive a power loss too. Zero fsyncs every result before it is sent.
	SyncDelay time.Duration
	// TTL is how long a result is retried before it is given up. Default 24h.
	TTL time.Duration
	// Backoff is the wait between attempts. Default 500ms doubling to 1m.
	Backoff retry.Policy
	// CallTimeout bounds one attempt. Default 30s.
	CallTimeout time.Duration
	// MaxInFlight bounds concurrent sends. Default 64.
	MaxInFlight int
	Logger      *slog.Logger
	Now         func() time.Time
	// OnDone, if set, hears how each delivery ended.
	OnDone func(r manager.Result, o Outcome)
}

// Reporter delivers results. Deliveries run until they end or the context given to Start ends;
// what is still undelivered then stays in the spool for the next start.
type Reporter struct {
	opts    Options
	logger  *slog.Logger
	sem     chan struct{}
	pending atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	ctx     context.Context
	idle    chan struct{} // closed while nothing is pending
	// wake is closed to end the waits of the results that wait to be tried again; woken is when
	// it last was. Both are guarded by mu.
	wake  chan struct{}
	woken time.Time
}

// minWakeGap spaces the wake-ups that answers from the manager cause: while a manager fails some
// calls, the results that wait are tried again about once a second, not at every answer.
const minWakeGap = time.Second

// New returns a Reporter; call Start before Deliver.
func New(opts Options) *Reporter {
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff = retry.Policy{Initial: 500 * time.Millisecond, Max: time.Minute}
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	idle := make(chan struct{})
	close(idle)
	return &Reporter{opts: opts, logger: opts.Logger, sem: make(chan struct{}, opts.MaxInFlight), idle: idle, wake: make(chan struct{})}
}

// Start sets the context deliveries run under and redelivers what the spool holds from earlier
// runs. It returns the number of results it found there.
func (r *Reporter) Start(ctx context.Context) (int, error) {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	if r.opts.Spool == nil {
		return 0, nil
	}
	items, err := r.opts.Spool.Load()
	if err != nil {
		return 0, err
	}
	if len(items) > 0 {
		// A process that crashed may have left them written but not synced.
		if err := r.opts.Spool.SyncAll(); err != nil {
			r.logger.Error("could not sync the results kept from an earlier run", "err", err)
		}
	}
	for _, it := range items {
		r.logger.Info("delivering a result kept from an earlier run",
			"task_id", it.Entry.Result.TaskID, "code", it.Entry.Result.Code, "stored_at", it.Entry.StoredAt)
		r.launch(it.Key, it.Entry.Result, it.Entry.StoredAt)
	}
	return len(items), nil
}

// Deliver stores res in the spool, when there is one, and sends it in the background. It returns
// once the result is written (and fsynced, when SyncDelay is zero).
func (r *Reporter) Deliver(res manager.Result) {
	storedAt := r.opts.Now()
	key := ""
	if r.opts.Spool != nil {
		var err error
		if r.opts.SyncDelay > 0 {
			key, err = r.opts.Spool.Write(res, storedAt)
		} else {
			key, err = r.opts.Spool.Put(res, storedAt)
		}
		if err != nil {
			// Still deliver from memory: a full disk must not cost the result while we run.
			r.logger.Error("could not spool result; it is kept in memory only", "task_id", res.TaskID, "err", err)
		}
	}
	r.launch(key, res, storedAt)
}

// Pending returns how many results are waiting for delivery.
func (r *Reporter) Pending() int { return int(r.pending.Load()) }

// ManagerAnswered tells the reporter that the manager answered a call (the runtime calls it for
// every answered call, through a contact.Signal): results waiting to be tried again after
// failures are tried at once rather than at the end of a backoff that may have grown to a minute
// during an outage, at most about once a second, and except where the manager asked for a later
// retry.
func (r *Reporter) ManagerAnswered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.opts.Now(); now.Sub(r.woken) >= minWakeGap {
		r.wakeLocked(now)
	}
}

func (r *Reporter) wakeLocked(now time.Time) {
	close(r.wake)
	r.wake = make(chan struct{})
	r.woken = now
}

func (r *Reporter) wakeChan() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}

// Flush makes the spooled results durable, tries the results waiting to be tried again at once,
// then waits until nothing is pending or ctx ends: a runner that stops does not sleep through its
// grace period while the manager could take its results.
func (r *Reporter) Flush(ctx context.Context) error {
	if r.opts.Spool != nil && r.Pending() > 0 {
		if err := r.opts.Spool.SyncAll(); err != nil {
			r.logger.Error("could not sync the spooled results", "err", err)
		}
	}
	r.mu.Lock()
	idle := r.idle
	r.wakeLocked(r.opts.Now())
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until every delivery goroutine has returned (after the Start context ended or
// everything was delivered).
func (r *Reporter) Wait() { r.wg.Wait() }

func (r *Reporter) launch(key string, res manager.Result, storedAt time.Time) {
	r.mu.Lock()
	ctx := r.ctx
	if r.pending.Add(1) == 1 {
		r.idle = make(chan struct{})
	}
	r.mu.Unlock()
	if ctx == nil {
		panic("reporter: Deliver before Start")
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.done()
		r.deliver(ctx, key, res, storedAt)
	}()
}

func (r *Reporter) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending.Add(-1) == 0 {
		close(r.idle)
	}
}

func (r *Reporter) deliver(ctx context.Context, key string, res manager.Result, storedAt time.Time) {
	// Most deliveries succeed at once and log nothing at the usual levels; the logger with the
	// result's attributes is built only when a line is written.
	var logger *slog.Logger
	log := func() *slog.Logger {
		if logger == nil {
			logger = r.logger.With("task_id", res.TaskID, "task_type", res.TaskType, "code", res.Code)
		}
		return logger
	}
	if key != "" && r.opts.SyncDelay > 0 {
		// Results the manager takes at once are removed before this fires, and never synced.
		syncLater := time.AfterFunc(r.opts.SyncDelay, func() { r.sync(key, res) })
		defer syncLater.Stop()
	}
	expires := storedAt.Add(r.opts.TTL)
	attempts := 0
	err := retry.UntilWoken(ctx, r.opts.Backoff, r.wakeChan, func(ctx context.Context) error {
		if !r.opts.Now().Before(expires) {
			return errs.Newf(errs.CodeExpired, "deliver result", "kept since %s", storedAt.Format(time.RFC3339))
		}
		attempts++
		return r.send(ctx, res)
	}, func(err error) bool { return !errs.Retryable(err) }, func(err error, wait time.Duration) {
		log().Warn("result not delivered yet; retrying", "err", err, "attempt", attempts, "retry_in", wait.Round(time.Millisecond))
	})
	var outcome Outcome
	switch {
	case err == nil:
		outcome = Delivered
		if r.logger.Enabled(ctx, slog.LevelDebug) {
			log().Debug("result delivered", "attempts", attempts)
		}
	case ctx.Err() != nil:
		if key != "" {
			log().Info("runner stopping; result stays in the spool for the next start")
		} else {
			log().Error("runner stopping; result LOST (it could not be spooled)")
		}
		return
	case errs.CodeOf(err) == errs.CodeExpired:
		outcome = Expired
		log().Error("result LOST: the manager did not accept it before it expired", "err", err, "attempts", attempts, "ttl", r.opts.TTL)
	default:
		outcome = Rejected
		log().Error("result LOST: the manager refused it for good", "err", err, "attempts", attempts)
	}
	if key != "" {
		if rmErr := r.opts.Spool.Remove(key); rmErr != nil {
			log().Error("could not remove spooled result; it will be delivered again at the next start", "err", rmErr)
		}
	}
	if r.opts.OnDone != nil {
		r.opts.OnDone(res, outcome)
	}
}

func (r *Reporter) send(ctx context.Context, res manager.Result) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.sem }()
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	return r.opts.Sender.Report(ctx, res)
}

// sync makes a spooled result that is still undelivered durable.
func (r *Reporter) sync(key string, res manager.Result) {
	if err := r.opts.Spool.Sync(key); err != nil {
		r.logger.Error("could not sync a spooled result; it survives a crash of the runner, not of the machine",
			"task_id", res.TaskID, "task_type", res.TaskType, "err", err)
	}
}
