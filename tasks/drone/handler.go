package drone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/gen/dronetasks"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/drone/pipeline"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/tasks"
)

// Engine is the part of the stage engine a Drone stage uses.
type Engine interface {
	Setup(ctx context.Context, spec engine.StageSpec) (*engine.Stage, error)
	Execute(ctx context.Context, stageID string, spec engine.StepSpec) (engine.StepResult, error)
	Cleanup(ctx context.Context, stageID string) error
	Stages(ctx context.Context) ([]*engine.Stage, error)
}

// engineStagePrefix starts the engine's id of every Drone stage.
const engineStagePrefix = "drone-"

// Options configure a Handler. Engine and Logs are required.
type Options struct {
	Engine Engine
	// Logs is the transport registered for LogKind in the engine's log registry; the handler
	// takes each step's full log from it.
	Logs *Logs
	// MaxParallel bounds the steps of a stage that run at once. Default 8.
	MaxParallel int
	// CloneImage is the image the clone step of a docker pipeline runs in, pulled when the
	// daemon does not have it. Default DefaultCloneImage.
	CloneImage string
	// CleanupTimeout bounds the engine's cleanup of a stage. Default 2m.
	CleanupTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler runs Drone stages. What the Drone server hears while a stage runs (the stage's start
// with its steps, each step's start and end) the handler hands the runtime as task updates
// (tasks.Update, a StageUpdate each), which the runtime spools and delivers in order, durably,
// before the stage's outcome: a Drone server that is down or slow neither fails nor holds up the
// stage, and a restart of the runner loses none of them.
type Handler struct {
	opts Options
}

var _ dronetasks.StrictServerInterface = (*Handler)(nil)

// New returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Engine == nil || opts.Logs == nil {
		return nil, errors.New("drone stage handler: an engine and the log transport are required")
	}
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = 8
	}
	if opts.CloneImage == "" {
		opts.CloneImage = DefaultCloneImage
	}
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = 2 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts}, nil
}

// CleanupLeftovers removes what the engine still holds of Drone stages a runner process that
// stopped without finishing them left behind (their containers, networks, processes and
// directories): a stage is cleaned up before its handler answers, so any still there was cut
// short. The runtime answers those stages to the server (see manager.Recoverer). Call it at
// start, before the runner takes work; it returns how many it removed.
func (h *Handler) CleanupLeftovers(ctx context.Context, logger *slog.Logger) (int, error) {
	stages, err := h.opts.Engine.Stages(ctx)
	if err != nil {
		return 0, fmt.Errorf("list the stage engine's stages: %w", err)
	}
	n := 0
	for _, st := range stages {
		if !strings.HasPrefix(st.Spec.ID, engineStagePrefix) {
			continue
		}
		logger.Warn("cleaning up a Drone stage an earlier run left unfinished", "stage", strings.TrimPrefix(st.Spec.ID, engineStagePrefix))
		if err := h.opts.Engine.Cleanup(ctx, st.Spec.ID); err != nil {
			return n, fmt.Errorf("clean up stage %s: %w", st.Spec.ID, err)
		}
		n++
	}
	return n, nil
}

// Register mounts the handler's operation on r.
func (h *Handler) Register(r dronetasks.EchoRouter) {
	dronetasks.RegisterHandlers(r, dronetasks.NewStrictHandler(h, nil))
}

// DroneStage runs one stage and answers its final state with the steps' logs. A stage that
// cannot run answers its error in that state too; only data that is not a stage is refused.
func (h *Handler) DroneStage(ctx context.Context, req dronetasks.DroneStageRequestObject) (dronetasks.DroneStageResponseObject, error) {
	if req.Body == nil || req.Body.Stage.Id == 0 {
		return dronetasks.DroneStage422JSONResponse{Message: "the task data holds no stage"}, nil
	}
	return dronetasks.DroneStage200JSONResponse(h.Run(ctx, *req.Body)), nil
}

// Run runs the stage t and returns its report.
func (h *Handler) Run(ctx context.Context, t drone.StageTask) drone.StageReport {
	stage := t.Stage
	if t.Details.Stage.Id == stage.Id && t.Details.Stage.Version > stage.Version {
		stage = t.Details.Stage
	}
	logger := tasks.Logger(ctx)
	p, err := pipeline.ParseStage(t.Details.Config.Data, stage.Name)
	if err == nil {
		err = p.Check()
	}
	if err != nil {
		logger.Warn("Drone stage cannot run", "stage", stage.Id, "err", err)
		return drone.StageReport{Stage: pipeline.FailStage(stage, err, h.opts.Now())}
	}
	if minutes := t.Details.Repository.Timeout; minutes > 0 {
		// The repository's timeout bounds the stage, as Drone runners do: at its end the running
		// steps are stopped and the stage ends killed.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(minutes)*time.Minute)
		defer cancel()
	}
	plan := pipeline.NewPlan(p, pipeline.Facts{Repo: t.Details.Repository, Build: t.Details.Build, Stage: stage,
		System: t.Details.System, Secrets: t.Details.Secrets, Netrc: t.Details.Netrc, CloneImage: h.opts.CloneImage})
	r := &stageRun{h: h, plan: plan, stage: stage, sched: pipeline.NewScheduler(plan), logger: logger,
		engineID: fmt.Sprintf("%s%d", engineStagePrefix, stage.Id), trusted: t.Details.Repository.Trusted}
	return r.run(ctx)
}

// stageRun is one stage while it runs. Only the goroutine of run touches it; steps run in
// goroutines of their own and hand their results back.
type stageRun struct {
	h        *Handler
	plan     *pipeline.Plan
	stage    drone.Stage
	sched    *pipeline.Scheduler
	logger   *slog.Logger
	engineID string
	// trusted is the repository's trust, which host volumes need.
	trusted bool
	// shared is the host directory of the stage's shared files, once it is set up.
	shared string
}

// stepDone is how one step's run ended.
type stepDone struct {
	number  int
	result  pipeline.Result
	stopped time.Time
}

func (r *stageRun) now() int64 { return r.h.opts.Now().Unix() }

func (r *stageRun) run(ctx context.Context) drone.StageReport {
	r.stage.Status, r.stage.Started, r.stage.Stopped = drone.Status("running"), r.now(), 0
	r.stage.Steps = r.plan.WireSteps(r.stage.Id)
	if err := tasks.Update(ctx, drone.StageUpdate{Stage: r.stage}); err != nil {
		return drone.StageReport{Stage: pipeline.FailStage(r.stage, fmt.Errorf("the stage's start could not be kept for the Drone server: %w", err), r.h.opts.Now())}
	}

	volumes, err := stageVolumes(r.plan.Pipeline, r.trusted)
	if err != nil {
		return r.final(err)
	}
	spec := engine.StageSpec{ID: r.engineID, Secrets: r.plan.Secrets, Logs: logstreamConfig(), Volumes: volumes}
	if r.plan.Pipeline.Type == pipeline.TypeDocker {
		// Docker steps find their sources where Drone puts them: /drone/src, or the pipeline's
		// workspace path.
		spec.WorkspacePath = r.plan.Workspace
	}
	st, err := r.h.opts.Engine.Setup(ctx, spec)
	if err != nil {
		r.cleanup(ctx)
		return r.final(fmt.Errorf("the stage could not be set up: %w", err))
	}
	r.shared = st.Shared
	defer r.cleanup(ctx)
	r.schedule(ctx)
	return r.final(nil)
}

// schedule starts steps as the scheduler allows, at most MaxParallel at once, reports each
// step's start and end, and on a cancel stops what runs and skips the rest.
func (r *stageRun) schedule(ctx context.Context) {
	results := make(chan stepDone)
	var queue []pipeline.Start
	running, cancelled := 0, false
	done := ctx.Done()
	for {
		d := r.sched.Next()
		for _, ps := range d.Skipped {
			if !cancelled {
				r.stepUpdate(ctx, ps.Number, func(s *drone.Step) { s.Status = "skipped" })
			}
		}
		for _, ps := range d.Errored {
			r.stepUpdate(ctx, ps.Number, func(s *drone.Step) {
				s.Status, s.ExitCode, s.Error = "error", pipeline.ExitError, ps.Error
				s.Started, s.Stopped = r.now(), r.now()
			})
		}
		queue = append(queue, d.Start...)
		for len(queue) > 0 && running < r.h.opts.MaxParallel {
			st := queue[0]
			queue = queue[1:]
			r.stepUpdate(ctx, st.Step.Number, func(s *drone.Step) { s.Status, s.Started = "running", r.now() })
			running++
			go func() {
				res := r.execute(ctx, st)
				results <- stepDone{number: st.Step.Number, result: res, stopped: r.h.opts.Now()}
			}()
		}
		if running == 0 && len(queue) == 0 {
			break
		}
		select {
		case sd := <-results:
			running--
			r.finish(ctx, sd)
		case <-done:
			done, cancelled = nil, true
			r.logger.Info("Drone stage cancelled; stopping its steps", "stage", r.stage.Id, "cause", context.Cause(ctx))
			r.sched.Cancel()
			for _, st := range queue {
				r.finish(ctx, stepDone{number: st.Step.Number, result: pipeline.Result{Killed: true}, stopped: r.h.opts.Now()})
			}
			queue = nil
		}
	}
	// Detached steps still run; the cleanup stops them. They count as started and fine.
	for _, ps := range r.sched.Running() {
		_ = r.sched.Finish(ps.Number, pipeline.Result{})
	}
}

// finish records a step's end and reports it.
func (r *stageRun) finish(ctx context.Context, sd stepDone) {
	if err := r.sched.Finish(sd.number, sd.result); err != nil {
		r.logger.Warn("step result out of order", "stage", r.stage.Id, "err", err)
		return
	}
	out, _ := r.sched.Step(sd.number)
	r.stepUpdate(ctx, sd.number, func(s *drone.Step) {
		s.Status, s.ExitCode, s.Error = out.Status, out.ExitCode, out.Error
		if s.Started == 0 {
			s.Started = sd.stopped.Unix()
		}
		s.Stopped = sd.stopped.Unix()
	})
}

// execute runs one step on the engine and maps how it ended.
func (r *stageRun) execute(ctx context.Context, st pipeline.Start) pipeline.Result {
	if st.Step.Clone != nil && r.plan.Pipeline.Type == pipeline.TypeExec && !hostHasGit(st.Env) {
		return pipeline.Result{Error: "git is not installed on the runner's host, and the clone step needs it: " +
			"install git, or turn the clone off with clone: {disable: true}"}
	}
	spec := r.stepSpec(st)
	res, err := r.h.opts.Engine.Execute(ctx, r.engineID, spec)
	if err != nil {
		if ctx.Err() != nil {
			return pipeline.Result{Killed: true}
		}
		return pipeline.Result{Error: err.Error()}
	}
	switch res.Status {
	case engine.StepSuccess, engine.StepRunning:
		return pipeline.Result{}
	case engine.StepFailure:
		return pipeline.Result{ExitCode: res.ExitCode}
	case engine.StepAborted, engine.StepTimeout:
		return pipeline.Result{Killed: true}
	default:
		msg := res.Error
		if msg == "" {
			msg = "the step could not run"
		}
		return pipeline.Result{Error: msg}
	}
}

// final is the stage's report: its outcome (or error with setupErr), every step as it ended,
// and the logs.
func (r *stageRun) final(setupErr error) drone.StageReport {
	r.sched.Report(r.stage.Steps)
	status, code := r.sched.Outcome()
	r.stage.Status, r.stage.ExitCode = status, code
	if setupErr != nil {
		r.stage.Status, r.stage.ExitCode, r.stage.Error = "error", pipeline.ExitError, setupErr.Error()
	}
	r.stage.Stopped = r.now()
	rep := drone.StageReport{Stage: r.stage}
	for i := range r.stage.Steps {
		s := &r.stage.Steps[i]
		if s.Started != 0 && s.Stopped == 0 {
			s.Stopped = r.stage.Stopped
		}
		if lines := r.h.opts.Logs.Take(r.stage.Id, s.Number); lines != nil {
			rep.Logs = append(rep.Logs, drone.StepLog{Number: s.Number, Lines: lines})
		}
	}
	rep.Stage = r.stage
	return rep
}

// cleanup removes what the engine made for the stage, even after a cancel.
func (r *stageRun) cleanup(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.h.opts.CleanupTimeout)
	defer cancel()
	if err := r.h.opts.Engine.Cleanup(cctx, r.engineID); err != nil {
		r.logger.Warn("Drone stage cleanup failed", "stage", r.stage.Id, "err", err)
	}
}

// stepUpdate changes the wire step numbered number and hands the change over for the Drone
// server, which knows the step by the id it gave it: the backend adds it.
func (r *stageRun) stepUpdate(ctx context.Context, number int, change func(*drone.Step)) {
	i := r.stepIndex(number)
	if i < 0 {
		return
	}
	change(&r.stage.Steps[i])
	if err := tasks.Update(ctx, drone.StageUpdate{Step: r.stage.Steps[i]}); err != nil {
		// The stage's outcome still carries the step as it ends.
		r.logger.Warn("step update not kept for the Drone server", "stage", r.stage.Id, "step", r.stage.Steps[i].Name,
			"status", r.stage.Steps[i].Status, "err", err)
	}
}

func (r *stageRun) stepIndex(number int) int {
	for i := range r.stage.Steps {
		if r.stage.Steps[i].Number == number {
			return i
		}
	}
	return -1
}
