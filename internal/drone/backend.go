package drone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/gen/dronetasks"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
)

// TaskType is the task type of a Drone stage: the runtime dispatches every accepted stage to the
// handler registered for it.
const TaskType = "DRONE_STAGE"

// The Drone stage task's data and output, as openapi/dronetasks.yaml specifies them.
type (
	// StageTask is the data of a Drone stage task: the stage as accepted and its details, read
	// from the server in one acquire.
	StageTask = dronetasks.StageTask
	// StageReport is a Drone stage handler's output, delivered durably by the runtime's reporter:
	// the stage in its final state, with every step, and each step's full log, uploaded before
	// the final stage update. Steps and logs may name a step by its number only: the backend
	// fills in the id and version the server gave it.
	StageReport = dronetasks.StageReport
	// StageUpdate is an update a Drone stage handler sends while the stage runs (tasks.Update),
	// delivered durably and in order by the runtime's reporter: the stage's start with its steps,
	// or one step's change, named by its number.
	StageUpdate = dronetasks.StageUpdate
	// StepLog is one step's full log.
	StepLog = dronetasks.StepLog
)

// BackendOptions configure a Backend.
type BackendOptions struct {
	// Client makes the calls; required.
	Client *Client
	// Filter says which stages the runner takes.
	Filter Filter
	// Machine is the name the runner accepts stages as; required.
	Machine string
	// StateDir keeps a file per stage accepted and not yet reported: how the server last saved it,
	// with its steps' ids and versions. A runner restarted on the same directory delivers the
	// updates and outcomes its spool kept for those stages, and answers the ones it was running
	// when it stopped (see Unfinished). Empty keeps them in memory only.
	StateDir string
	// WatchBackoff makes the backoff of each build's watch after a failed watch. Default
	// NewBackoff with the package's policies.
	WatchBackoff func() *Backoff
	// WatchStagger is how long after a build's first watch its second one opens. Default 250ms.
	WatchStagger time.Duration
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Backend is a Drone server behind the runtime's manager port. A poll is a long poll offering one
// stage (it implements manager.Offerer); an acquire accepts the stage with the server's version
// check (409: another runner took it) and reads its details into the task's data; a
// registration and a heartbeat are pings. While a stage runs, its build is watched without a gap
// (two staggered watches, each reopened at once after it ended with nothing), and a cancel names
// the stage on Aborts (manager.AbortSource). Report delivers a stage handler's StageReport: the logs, then
// the final stage update, reloading the stage's version and trying again when a cancel on the
// server raised it.
type Backend struct {
	opts   BackendOptions
	logger *slog.Logger
	aborts chan string
	base   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	// book holds the stages accepted here and not yet reported, so an acquire tried again after a
	// lost answer does not take its own accept for another runner's, and so updates and outcomes
	// can address the steps the handler names by number.
	book *book

	mu sync.Mutex
	// watches are the builds watched, by build id.
	watches map[int64]*buildWatch
}

// buildWatch is the watch of one build: the stages of it running here, and how to stop it.
type buildWatch struct {
	stages map[int64]bool
	cancel context.CancelFunc
}

var (
	_ manager.Manager     = (*Backend)(nil)
	_ manager.Offerer     = (*Backend)(nil)
	_ manager.AbortSource = (*Backend)(nil)
	_ manager.Recoverer   = (*Backend)(nil)
)

// NewBackend returns a Backend, with the stages StateDir holds from an earlier run; Close stops
// its watches.
func NewBackend(opts BackendOptions) (*Backend, error) {
	if opts.Client == nil {
		return nil, errors.New("drone backend: a client is required")
	}
	if opts.Machine == "" {
		return nil, errors.New("drone backend: a machine name is required")
	}
	if opts.WatchBackoff == nil {
		opts.WatchBackoff = func() *Backoff { return NewBackoff(retry.Policy{}, retry.Policy{}) }
	}
	if opts.WatchStagger <= 0 {
		opts.WatchStagger = 250 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	bk, err := openBook(opts.StateDir)
	if err != nil {
		return nil, err
	}
	base, stop := context.WithCancel(context.Background())
	return &Backend{
		opts:    opts,
		logger:  opts.Logger,
		aborts:  make(chan string, 64),
		base:    base,
		stop:    stop,
		book:    bk,
		watches: map[int64]*buildWatch{},
	}, nil
}

// Unfinished returns the stages accepted here, by this run or an earlier one on the same
// StateDir, and not yet reported.
func (b *Backend) Unfinished() ([]manager.Unfinished, error) {
	ids := b.book.ids()
	out := make([]manager.Unfinished, 0, len(ids))
	for _, id := range ids {
		out = append(out, manager.Unfinished{TaskID: strconv.FormatInt(id, 10), TaskType: TaskType})
	}
	return out, nil
}

// Close stops every watch and waits for them.
func (b *Backend) Close() {
	b.stop()
	b.wg.Wait()
}

// Aborts receives the id of each stage whose build the server cancelled.
func (b *Backend) Aborts() <-chan string { return b.aborts }

// Register pings the server: it checks that the server is up and takes the secret. The runner is
// known by its machine name.
func (b *Backend) Register(ctx context.Context, _ manager.Delegate) (manager.Registration, error) {
	if err := b.opts.Client.Ping(ctx); err != nil {
		return manager.Registration{}, err
	}
	return manager.Registration{DelegateID: b.opts.Machine}, nil
}

// Heartbeat pings the server.
func (b *Backend) Heartbeat(ctx context.Context, delegateID string, _ manager.Delegate) (manager.Heartbeat, error) {
	if err := b.opts.Client.Ping(ctx); err != nil {
		return manager.Heartbeat{}, err
	}
	return manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: delegateID}, nil
}

// Poll is Offer as a list, for callers that know only the Manager port.
func (b *Backend) Poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	ev, err := b.Offer(ctx, delegateID)
	if err != nil || ev == nil {
		return nil, err
	}
	return []manager.Event{*ev}, nil
}

// Offer long-polls the server for a stage matching the filter; nil when the poll ended with none.
func (b *Backend) Offer(ctx context.Context, _ string) (*manager.Event, error) {
	stage, ok, err := b.opts.Client.Request(ctx, b.opts.Filter)
	if err != nil || !ok {
		if err != nil && ctx.Err() != nil {
			// The runner ended the long poll: that is no work, not a failure.
			return nil, nil
		}
		return nil, err
	}
	return &manager.Event{TaskID: strconv.FormatInt(stage.Id, 10), TaskType: TaskType}, nil
}

// Acquire accepts the stage and reads its details. Another runner's accept is an error matching
// errs.ErrAcquireConflict. Once accepted, the stage's build is watched until the stage is
// reported.
func (b *Backend) Acquire(ctx context.Context, _ string, taskID string) (*manager.Task, error) {
	id, err := stageID(taskID)
	if err != nil {
		return nil, err
	}
	stage, again := b.book.get(id)
	if !again {
		stage, err = b.opts.Client.Accept(ctx, id, b.opts.Machine)
		if err != nil {
			return nil, err
		}
		if err := b.book.put(stage, true); err != nil {
			b.logger.Error("could not record an accepted stage on disk; a restart of the runner before it ends would leave it taken",
				"stage", id, "err", err)
		}
	}
	details, err := b.opts.Client.Detail(ctx, id)
	if err != nil {
		if !errs.Retryable(err) && !errors.Is(err, errs.ErrMalformedResponse) && ctx.Err() == nil {
			// The stage is this runner's now and is offered to no other: left as it is, it would
			// stay pending until the server's reaper finds it.
			b.abandon(ctx, stage, err)
		}
		return nil, err
	}
	data, err := json.Marshal(StageTask{Stage: details.Stage, Details: details})
	if err != nil {
		return nil, errs.Wrap(errs.CodeUnknown, "acquire stage "+taskID, err)
	}
	b.watch(details.Build.Id, id)
	env := manager.Task{Data: data, Raw: data}
	env.ID, env.Type, env.AcquiredAt = taskID, TaskType, b.opts.Now()
	return &env, nil
}

// Report delivers a stage's update or its outcome. An update (StageUpdate) is the stage's start,
// which the server answers with its steps' ids, or one step's change, sent with the id and
// version the server last gave that step. An outcome is the handler's StageReport when it gave
// one, else the stage ended as error (or killed) with the outcome's reason. The step logs are
// uploaded first (a log the server refuses for good, say one uploaded before a restart, is
// logged and skipped), then the stage is updated; on a version conflict the stage's current
// version is read back and the update sent again without the steps, whose states the server's
// canceller has set.
func (b *Backend) Report(ctx context.Context, r manager.Result) error {
	id, err := stageID(r.TaskID)
	if err != nil {
		return err
	}
	if r.IsUpdate() {
		return b.update(ctx, id, r)
	}
	var rep StageReport
	if len(r.Data) > 0 {
		if err := json.Unmarshal(r.Data, &rep); err != nil {
			return errs.Wrap(errs.CodeInvalidTaskData, "report stage "+r.TaskID, err)
		}
	}
	if rep.Stage.Id == 0 {
		rep, err = b.failedReport(ctx, id, r)
		if err != nil {
			return err
		}
	}
	booked, _ := b.book.get(id)
	rep = addressed(rep, booked)
	for _, l := range rep.Logs {
		if l.StepId == 0 {
			continue
		}
		if err := b.opts.Client.Upload(ctx, l.StepId, l.Lines); err != nil {
			if errs.Retryable(err) {
				return err
			}
			b.logger.Warn("step log refused by the Drone server; going on without it", "stage", id, "step", l.StepId, "err", err)
		}
	}
	if _, err := b.opts.Client.UpdateStage(ctx, rep.Stage); err != nil {
		if !errors.Is(err, ErrOptimisticLock) {
			return err
		}
		current, derr := b.opts.Client.Detail(ctx, id)
		if derr != nil {
			return derr
		}
		retry := rep.Stage
		retry.Version, retry.Steps = current.Stage.Version, nil
		b.logger.Info("stage changed on the Drone server since it started (a cancel, say); sending its final state again with the current version",
			"stage", id, "version", retry.Version)
		if _, err := b.opts.Client.UpdateStage(ctx, retry); err != nil {
			return err
		}
	}
	b.done(id)
	return nil
}

// addressed fills in what the server gave the stage's steps, as booked, where rep names them by
// number only: their ids and versions, and the stage's version where the server raised it since
// the handler read it. Steps the server never took (no id) are left out of the update, whose
// "after all" could not find them, and so are logs of such steps.
func addressed(rep StageReport, booked Stage) StageReport {
	rep.Stage.Version = max(rep.Stage.Version, booked.Version)
	ids := map[int]Step{}
	for _, s := range booked.Steps {
		if s.Id != 0 {
			ids[s.Number] = s
		}
	}
	steps := make([]Step, 0, len(rep.Stage.Steps))
	for _, s := range rep.Stage.Steps {
		if b, ok := ids[s.Number]; ok && (s.Id == 0 || s.Id == b.Id) {
			s.Id, s.Version = b.Id, max(s.Version, b.Version)
		}
		if s.Id != 0 {
			steps = append(steps, s)
		}
	}
	rep.Stage.Steps = steps
	if len(steps) == 0 {
		rep.Stage.Steps = nil
	}
	logs := rep.Logs[:0:0]
	for _, l := range rep.Logs {
		if l.StepId == 0 {
			l.StepId = ids[l.Number].Id
		}
		if l.StepId != 0 {
			logs = append(logs, l)
		}
	}
	rep.Logs = logs
	return rep
}

// update delivers one StageUpdate of a running stage.
func (b *Backend) update(ctx context.Context, id int64, r manager.Result) error {
	op := fmt.Sprintf("update stage %d (update %d)", id, r.Update)
	var u StageUpdate
	if err := json.Unmarshal(r.Data, &u); err != nil {
		return errs.Wrap(errs.CodeInvalidTaskData, op, err)
	}
	booked, ok := b.book.get(id)
	if !ok {
		return errs.Newf(errs.CodeInvalidTaskData, op, "the stage is not held by this runner (reported already, or never accepted here)")
	}
	switch {
	case u.Stage.Id != 0:
		return b.start(ctx, booked, u.Stage)
	case u.Step.Number != 0:
		return b.stepUpdate(ctx, booked, u.Step)
	default:
		return errs.Newf(errs.CodeInvalidTaskData, op, "the update names neither the stage nor a step")
	}
}

// start sends the stage's start with its steps, which the server inserts, and books the ids and
// versions it gave them. A start the server took already (sent again after a restart) is not
// sent twice: a second one would insert the steps again.
func (b *Backend) start(ctx context.Context, booked, start Stage) error {
	if len(booked.Steps) > 0 {
		return nil
	}
	if booked.Version != 0 {
		start.Version = max(start.Version, booked.Version)
	}
	saved, err := b.opts.Client.UpdateStage(ctx, start)
	if errors.Is(err, ErrOptimisticLock) {
		// The server changed the stage since it was accepted: a cancel. Its steps were never
		// inserted; the cancel stops the stage here, and its outcome is sent without them.
		b.logger.Info("the Drone server refused the stage's start: it changed since it was accepted (a cancel, say)", "stage", start.Id)
		return nil
	}
	if err != nil {
		return err
	}
	start.Version, start.Updated = saved.Version, saved.Updated
	for i := range start.Steps {
		for _, s := range saved.Steps {
			if s.Number == start.Steps[i].Number {
				start.Steps[i].Id, start.Steps[i].Version = s.Id, s.Version
			}
		}
	}
	if err := b.book.put(start, false); err != nil {
		b.logger.Error("could not record a stage's steps on disk; after a restart its updates could not name them", "stage", start.Id, "err", err)
	}
	return nil
}

// stepUpdate sends a step's change with the id and version the server last gave it. A step the
// server never took (its stage's start was refused) is not sent: the outcome carries the stage.
// A version conflict means the server changed the step itself (a cancel) or took this very
// update before a restart of the runner: either way there is nothing left to send.
func (b *Backend) stepUpdate(ctx context.Context, booked Stage, step Step) error {
	var current *Step
	for i := range booked.Steps {
		if booked.Steps[i].Number == step.Number {
			current = &booked.Steps[i]
		}
	}
	if current == nil || current.Id == 0 {
		b.logger.Debug("step update for a step the Drone server does not know; its outcome carries it", "stage", booked.Id, "step", step.Number)
		return nil
	}
	if finished(current.Status) && !finished(step.Status) {
		// An earlier update sent again: the step has ended since.
		return nil
	}
	step.Id, step.Version, step.StepId = current.Id, current.Version, booked.Id
	saved, err := b.opts.Client.UpdateStep(ctx, step)
	if errors.Is(err, ErrOptimisticLock) {
		b.logger.Info("the Drone server refused a step update: the step changed there (a cancel, or the update was taken before the runner restarted)",
			"stage", booked.Id, "step", step.Number, "status", step.Status)
		return nil
	}
	if err != nil {
		return err
	}
	step.Version = saved.Version
	if err := b.book.change(booked.Id, func(st *Stage) {
		for i := range st.Steps {
			if st.Steps[i].Number == step.Number {
				st.Steps[i] = step
			}
		}
	}); err != nil {
		b.logger.Error("could not record a step's version on disk", "stage", booked.Id, "step", step.Number, "err", err)
	}
	return nil
}

// finished reports whether a stage or step status is final.
func finished(s Status) bool {
	return s != gen.StatusPending && s != gen.StatusRunning && s != ""
}

// OpenStep waits until the server has taken the start of step number of stage and returns the
// step's id, for its live log lines: the server has a log stream for a step only while it runs.
func (b *Backend) OpenStep(ctx context.Context, stage int64, number int) (int64, error) {
	return b.book.openStep(ctx, stage, number)
}

// abandon ends a stage accepted here whose details cannot be read: status error, saying why.
func (b *Backend) abandon(ctx context.Context, stage Stage, cause error) {
	now := b.opts.Now()
	stage.Status, stage.ExitCode, stage.Error = gen.StatusError, 255, cutText(fmt.Sprintf("the runner could not read the stage's details: %v", cause))
	if stage.Started == 0 {
		stage.Started = now.Unix()
	}
	stage.Stopped, stage.Steps = now.Unix(), nil
	if _, err := b.opts.Client.UpdateStage(ctx, stage); err != nil {
		b.logger.Error("could not end a stage whose details cannot be read; the server's reaper will", "stage", stage.Id, "err", err)
	}
	b.forget(stage.Id)
}

// forget takes a stage out of the book.
func (b *Backend) forget(id int64) {
	if err := b.book.remove(id); err != nil {
		b.logger.Error("could not remove a reported stage's record; a restart would report it again", "stage", id, "err", err)
	}
}

// cutText keeps what a Drone server keeps of an error text, on a rune boundary.
func cutText(s string) string {
	const limit = 500
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut]
}

// failedReport is the final update of a stage whose handler gave no report: status error, or
// killed when the run was aborted or the runner shut down, with the reason.
func (b *Backend) failedReport(ctx context.Context, id int64, r manager.Result) (StageReport, error) {
	details, err := b.opts.Client.Detail(ctx, id)
	if err != nil {
		return StageReport{}, err
	}
	stage := details.Stage
	now := b.opts.Now().Unix()
	if stage.Started == 0 {
		stage.Started = now
	}
	stage.Stopped, stage.Machine = now, b.opts.Machine
	stage.Status, stage.ExitCode = gen.StatusError, 255
	if r.Error == errs.ErrAborted.Error() || r.Error == errs.ErrShuttingDown.Error() {
		// Stopped before its handler could answer: the stage was killed, not broken.
		stage.Status, stage.ExitCode = gen.StatusKilled, 137
	}
	stage.Error = r.Error
	if stage.Error == "" {
		stage.Error = fmt.Sprintf("the runner could not run the stage (%s)", r.Code)
	}
	stage.Error = cutText(stage.Error)
	// The steps the server took end too: those that ran as the stage did, the others skipped.
	booked, _ := b.book.get(id)
	stage.Steps = nil
	for _, s := range booked.Steps {
		switch s.Status {
		case gen.StatusRunning:
			s.Status, s.ExitCode, s.Stopped = stage.Status, stage.ExitCode, now
			if stage.Status == gen.StatusError {
				s.Error = "the runner stopped while the step ran"
			}
		case gen.StatusPending:
			s.Status = gen.StatusSkipped
		}
		stage.Steps = append(stage.Steps, s)
	}
	return StageReport{Stage: stage}, nil
}

// watch watches the build for a cancel while stage runs here.
func (b *Backend) watch(buildID, stage int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.watches[buildID]; ok {
		w.stages[stage] = true
		return
	}
	ctx, cancel := context.WithCancel(b.base)
	b.watches[buildID] = &buildWatch{stages: map[int64]bool{stage: true}, cancel: cancel}
	var once sync.Once
	fire := func() {
		once.Do(func() {
			b.fireAborts(buildID)
			cancel()
		})
	}
	// Two watches, the second opened WatchStagger after the first: each is reopened at once when
	// it ends with nothing, but between its end and the next one reaching the server a cancel
	// would find no watch open (the server tells only the watches open at the moment), so the
	// other one is open then.
	b.wg.Go(func() { b.watchLoop(ctx, buildID, 0, fire) })
	b.wg.Go(func() { b.watchLoop(ctx, buildID, b.opts.WatchStagger, fire) })
}

// done forgets a reported stage, and stops its build's watch when no other stage of it runs here.
func (b *Backend) done(stage int64) {
	b.forget(stage)
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, w := range b.watches {
		if w.stages[stage] {
			delete(w.stages, stage)
			if len(w.stages) == 0 {
				w.cancel()
				delete(b.watches, id)
			}
		}
	}
}

// watchLoop keeps a watch open on the build, from delay on, until ctx ends or the build is
// cancelled (then it calls fire), reopening it at once after each that ended with nothing.
func (b *Backend) watchLoop(ctx context.Context, buildID int64, delay time.Duration, fire func()) {
	if retry.Sleep(ctx, delay) != nil {
		return
	}
	failures := b.opts.WatchBackoff()
	for {
		cancelled, err := b.opts.Client.Watch(ctx, buildID)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			wait := failures.Next(err)
			b.logger.Warn("watch of a build failed; watching again after a backoff", "build", buildID, "err", err,
				"retry_in", wait.Round(time.Millisecond))
			if retry.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		failures.Reset()
		if cancelled {
			fire()
			return
		}
	}
}

// fireAborts names every stage of the cancelled build running here on Aborts.
func (b *Backend) fireAborts(buildID int64) {
	b.mu.Lock()
	var stages []int64
	if w, ok := b.watches[buildID]; ok {
		for id := range w.stages {
			stages = append(stages, id)
		}
	}
	b.mu.Unlock()
	b.logger.Info("build cancelled on the Drone server; stopping its stages", "build", buildID, "stages", len(stages))
	for _, id := range stages {
		select {
		case b.aborts <- strconv.FormatInt(id, 10):
		case <-b.base.Done():
			return
		}
	}
}

func stageID(taskID string) (int64, error) {
	id, err := strconv.ParseInt(taskID, 10, 64)
	if err != nil || id <= 0 {
		return 0, errs.Newf(errs.CodeInvalidTaskData, "drone stage", "task id %q is not a stage id", taskID)
	}
	return id, nil
}
