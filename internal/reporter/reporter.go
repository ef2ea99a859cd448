package reporter

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
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
	// OnDone, if set, hears how each delivery ended: of an outcome, or of an update
	// (r.IsUpdate()).
	OnDone func(r manager.Result, o Outcome)
}

// Reporter delivers results: the outcomes of tasks and the updates their handlers send while they
// run. Deliveries run until they end or the context given to Start ends; what is still
// undelivered then stays in the spool for the next start. The records of one task are delivered
// one after the other, in the order Deliver took them; records of different tasks go at once.
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
	// chains holds the place in line of every task with records pending, guarded by mu. A
	// task's entry goes when its last pending record ends, so the map holds the tasks in
	// delivery, and a task with one record never waits.
	chains map[string]chain
}

// chain is the line of one task's pending records: the record at place n (counted from the
// first record of the line, 0) is sent once n records of the line have ended.
type chain struct {
	launched int // records put in line
	ended    int // records whose delivery ended
	outcomes int // outcomes among the pending records
	// turn is closed, and cleared, when a record of the line ends: a record waiting for its
	// turn looks again. It is made by the first record that waits, so a line no record waits
	// in costs no channel.
	turn chan struct{}
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
	return &Reporter{opts: opts, logger: opts.Logger, sem: make(chan struct{}, opts.MaxInFlight), idle: idle, wake: make(chan struct{}),
		chains: make(map[string]chain)}
}

// Start sets the context deliveries run under and redelivers what the spool holds from earlier
// runs: each task's updates by their number, then its outcome. It returns the number of records
// it found there.
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
	inTaskOrder(items)
	for _, it := range items {
		res := it.Entry.Result
		if res.IsUpdate() {
			r.logger.Info("delivering an update kept from an earlier run",
				"task_id", res.TaskID, "update", res.Update, "stored_at", it.Entry.StoredAt)
		} else {
			r.logger.Info("delivering a result kept from an earlier run",
				"task_id", res.TaskID, "code", res.Code, "stored_at", it.Entry.StoredAt)
		}
		r.launch(it.Key, res, it.Entry.StoredAt)
	}
	return len(items), nil
}

// inTaskOrder puts the records of each task in the order they are delivered in: its updates by
// their number, then its outcome. The spool keeps them in the order they were stored, which for
// updates sent from several goroutines of a handler need not be theirs; the places a task's
// records hold among those of other tasks stay the same.
func inTaskOrder(items []spool.Item) {
	places := make(map[string][]int)
	for i, it := range items {
		places[it.Entry.Result.TaskID] = append(places[it.Entry.Result.TaskID], i)
	}
	rank := func(it spool.Item) int {
		if it.Entry.Result.IsUpdate() {
			return it.Entry.Result.Update
		}
		return math.MaxInt
	}
	for _, at := range places {
		if len(at) < 2 {
			continue
		}
		recs := make([]spool.Item, len(at))
		for j, i := range at {
			recs[j] = items[i]
		}
		slices.SortStableFunc(recs, func(a, b spool.Item) int { return cmp.Compare(rank(a), rank(b)) })
		for j, i := range at {
			items[i] = recs[j]
		}
	}
}

// Deliver stores res in the spool, when there is one, and sends it in the background. It returns
// once the result is written (and fsynced, when SyncDelay is zero). A task's records are sent in
// the order Deliver took them: each is first tried once the delivery of the one before it has
// ended (delivered, refused for good or expired).
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
			r.recordLogger(&res).Error(wordsFor(res.Update).unspooled, "err", err)
		}
	}
	r.launch(key, res, storedAt)
}

// Pending returns how many results (outcomes and updates) are waiting for delivery.
func (r *Reporter) Pending() int { return int(r.pending.Load()) }

// HasOutcome reports whether an outcome of the task is waiting for delivery here, handed to
// Deliver or loaded from the spool by Start.
func (r *Reporter) HasOutcome(taskID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chains[taskID].outcomes > 0
}

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
	if ctx == nil {
		r.mu.Unlock()
		panic("reporter: Deliver before Start")
	}
	if r.pending.Add(1) == 1 {
		r.idle = make(chan struct{})
	}
	// res.Update rather than res.IsUpdate(): the method would copy res onto the stack of every
	// caller, a task's goroutine among them.
	update := res.Update > 0
	c := r.chains[res.TaskID]
	// The entry of a task goes when its last pending record ends: place is above 0 only when
	// records of the task are pending, and this one must wait for them.
	place := c.launched
	c.launched++
	if !update {
		c.outcomes++
	}
	r.chains[res.TaskID] = c
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.done(res.TaskID, update)
		r.deliver(ctx, key, res, storedAt, place)
	}()
}

// done ends the delivery of a record of the task: the next record of the task may go.
func (r *Reporter) done(taskID string, update bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.chains[taskID]
	c.ended++
	if !update {
		c.outcomes--
	}
	if c.turn != nil {
		close(c.turn)
		c.turn = nil
	}
	if c.ended == c.launched {
		delete(r.chains, taskID)
	} else {
		r.chains[taskID] = c
	}
	if r.pending.Add(-1) == 0 {
		close(r.idle)
	}
}

// awaitTurn waits until the records of the task before place have ended, and reports false if
// ctx ended first.
func (r *Reporter) awaitTurn(ctx context.Context, taskID string, place int) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		r.mu.Lock()
		c := r.chains[taskID]
		if c.ended >= place {
			r.mu.Unlock()
			return true
		}
		if c.turn == nil {
			c.turn = make(chan struct{})
			r.chains[taskID] = c
		}
		turn := c.turn
		r.mu.Unlock()
		select {
		case <-turn:
		case <-ctx.Done():
			return false
		}
	}
}

// words are the texts of a record's log lines and errors: an outcome is a result, an update an
// update. They are fixed texts, so that no line costs a concatenation on a delivery's stack.
type words struct {
	retrying, delivered, kept, unkept, expired, refused, unremoved, unspooled, unsynced, op string
}

var (
	resultWords = words{
		retrying:  "result not delivered yet; retrying",
		delivered: "result delivered",
		kept:      "runner stopping; result stays in the spool for the next start",
		unkept:    "runner stopping; result LOST (it could not be spooled)",
		expired:   "result LOST: the manager did not accept it before it expired",
		refused:   "result LOST: the manager refused it for good",
		unremoved: "could not remove spooled result; it will be delivered again at the next start",
		unspooled: "could not spool result; it is kept in memory only",
		unsynced:  "could not sync a spooled result; it survives a crash of the runner, not of the machine",
		op:        "deliver result",
	}
	updateWords = words{
		retrying:  "update not delivered yet; retrying",
		delivered: "update delivered",
		kept:      "runner stopping; update stays in the spool for the next start",
		unkept:    "runner stopping; update LOST (it could not be spooled)",
		expired:   "update LOST: the manager did not accept it before it expired",
		refused:   "update LOST: the manager refused it for good",
		unremoved: "could not remove spooled update; it will be delivered again at the next start",
		unspooled: "could not spool update; it is kept in memory only",
		unsynced:  "could not sync a spooled update; it survives a crash of the runner, not of the machine",
		op:        "deliver update",
	}
)

// wordsFor returns the words of a record with the update number n.
func wordsFor(n int) *words {
	if n > 0 {
		return &updateWords
	}
	return &resultWords
}

// recordLogger returns the logger of a record's lines: they name its task, and its code or its
// update number.
func (r *Reporter) recordLogger(res *manager.Result) *slog.Logger {
	if res.Update > 0 {
		return r.logger.With("task_id", res.TaskID, "task_type", res.TaskType, "update", res.Update)
	}
	return r.logger.With("task_id", res.TaskID, "task_type", res.TaskType, "code", res.Code)
}

// deliver sends one record until its delivery ends. A record at a place above 0 in its task's
// line is first tried once the records before it have ended.
func (r *Reporter) deliver(ctx context.Context, key string, res manager.Result, storedAt time.Time, place int) {
	// Most deliveries succeed at once and log nothing at the usual levels; the logger with the
	// result's attributes is built only when a line is written.
	var logger *slog.Logger
	log := func() *slog.Logger {
		if logger == nil {
			logger = r.recordLogger(&res)
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
	var err error
	if place > 0 && !r.awaitTurn(ctx, res.TaskID, place) {
		err = ctx.Err()
	} else {
		err = retry.UntilWoken(ctx, r.opts.Backoff, r.wakeChan, func(ctx context.Context) error {
			if !r.opts.Now().Before(expires) {
				return errs.Newf(errs.CodeExpired, wordsFor(res.Update).op, "kept since %s", storedAt.Format(time.RFC3339))
			}
			attempts++
			return r.send(ctx, res)
		}, func(err error) bool { return !errs.Retryable(err) }, func(err error, wait time.Duration) {
			log().Warn(wordsFor(res.Update).retrying, "err", err, "attempt", attempts, "retry_in", wait.Round(time.Millisecond))
		})
	}
	w := wordsFor(res.Update)
	var outcome Outcome
	switch {
	case err == nil:
		outcome = Delivered
		if r.logger.Enabled(ctx, slog.LevelDebug) {
			log().Debug(w.delivered, "attempts", attempts)
		}
	case ctx.Err() != nil:
		if key != "" {
			log().Info(w.kept)
		} else {
			log().Error(w.unkept)
		}
		return
	case errs.CodeOf(err) == errs.CodeExpired:
		outcome = Expired
		log().Error(w.expired, "err", err, "attempts", attempts, "ttl", r.opts.TTL)
	default:
		outcome = Rejected
		log().Error(w.refused, "err", err, "attempts", attempts)
	}
	if key != "" {
		if rmErr := r.opts.Spool.Remove(key); rmErr != nil {
			log().Error(w.unremoved, "err", rmErr)
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
		r.recordLogger(&res).Error(wordsFor(res.Update).unsynced, "err", err)
	}
}
