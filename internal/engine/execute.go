package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// exitInternal is the exit code of a step that could not run, as the Harness runners report it.
const exitInternal = 255

// errStepTimeout is why a step's context ends at its timeout.
var errStepTimeout = errors.New("step timed out")

// execution is a step being run by this process. Callers that ask for the same step while it
// runs wait for done and share its result; Cleanup cancels it and waits for ended.
type execution struct {
	stage  string
	ctx    context.Context
	cancel context.CancelCauseFunc
	// done is closed once result (or err) is final for callers: at the end of an attached step,
	// right after the start of a detached one.
	done   chan struct{}
	result StepResult
	err    error
	// ended is closed once the step's process has ended and its record is written.
	ended chan struct{}
}

// wait waits for the execution's result, or for ctx.
func (x *execution) wait(ctx context.Context, stepID string) (StepResult, error) {
	select {
	case <-x.done:
		return x.result, x.err
	case <-ctx.Done():
		return StepResult{
			Status:   StepAborted,
			ExitCode: exitInternal,
			Error:    fmt.Sprintf("stopped waiting for step %s: %v", stepID, context.Cause(ctx)),
		}, nil
	}
}

// Execute runs a step of a ready stage and returns how it ended. A step with an image runs on
// the Docker backend, one without on the host. A step id that is running in this process is
// joined (the caller waits for the same run and gets the same result); a step id that has ended
// answers its stored result. A detached step is started and answered StepRunning at once; it
// runs until the stage's cleanup.
//
// A step that ran and failed, timed out or was aborted (ctx ended) is a StepResult, not an
// error; errors are for an unknown stage (ErrStageNotFound), input the engine refuses
// (ErrInvalid), a step no backend can run (ErrNoBackend) and what the runner's policy forbids
// (ErrNotAllowed).
func (e *Engine) Execute(ctx context.Context, stageID string, spec StepSpec) (StepResult, error) {
	st, err := e.store.Get(ctx, stageID)
	if err != nil {
		return StepResult{}, fmt.Errorf("execute step %s: %w", spec.ID, err)
	}
	if err := stageRunnable(st); err != nil {
		return StepResult{}, fmt.Errorf("execute step %s: %w", spec.ID, err)
	}
	if st.State != StageReady {
		return StepResult{}, fmt.Errorf("execute step %s: %w", spec.ID, invalidf("stage %s is not set up yet", st.Spec.ID))
	}
	return e.execute(ctx, st, spec)
}

// stageRunnable reports whether steps may start in the stage: it is ready, or being set up (its
// services start then).
func stageRunnable(st *Stage) error {
	switch {
	case st.SetupError != "":
		return invalidf("the setup of stage %s failed: %s", st.Spec.ID, st.SetupError)
	case st.State == StageDestroying:
		return invalidf("stage %s is being cleaned up", st.Spec.ID)
	case st.State != StageReady && st.State != StageInitializing:
		return invalidf("stage %s is in state %q", st.Spec.ID, st.State)
	}
	return nil
}

// execute runs spec in the stage st (ready, or being set up when spec is a service).
func (e *Engine) execute(ctx context.Context, st *Stage, spec StepSpec) (StepResult, error) {
	if err := validateStep(st, &spec); err != nil {
		return StepResult{}, err
	}
	backend, err := e.backendFor(&spec)
	if err != nil {
		return StepResult{}, err
	}
	key := stepKey{stage: st.Spec.ID, step: spec.ID}
	x, owner := e.claim(ctx, key, spec.Detach)
	if !owner {
		return x.wait(ctx, spec.ID)
	}
	res, watched, err := e.own(ctx, x, key, spec, backend)
	if !watched {
		e.finish(key, x, res, err)
		close(x.ended)
	}
	return res, err
}

func (e *Engine) backendFor(spec *StepSpec) (Backend, error) {
	if spec.Image == "" {
		return e.opts.Host, nil
	}
	if e.opts.Docker == nil {
		return nil, fmt.Errorf("%w: step %s needs Docker, which this runner does not have", ErrNoBackend, spec.ID)
	}
	return e.opts.Docker, nil
}

// claim registers the execution of key, or returns the one that runs already (owner false). The
// execution's context is made here, so a Cleanup that starts after the claim can cancel it.
func (e *Engine) claim(ctx context.Context, key stepKey, detach bool) (*execution, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.running[key]; x != nil {
		return x, false
	}
	parent := ctx
	if detach {
		// A detached step outlives the call that started it; Cleanup ends it.
		parent = context.WithoutCancel(ctx)
	}
	x := &execution{stage: key.stage, done: make(chan struct{}), ended: make(chan struct{})}
	x.ctx, x.cancel = context.WithCancelCause(parent)
	e.running[key] = x
	return x, true
}

// finish publishes the execution's result and forgets it; its record is written by then.
func (e *Engine) finish(key stepKey, x *execution, res StepResult, err error) {
	e.mu.Lock()
	if e.running[key] == x {
		delete(e.running, key)
	}
	e.mu.Unlock()
	x.cancel(nil)
	x.result, x.err = res, err
	select {
	case <-x.done:
	default:
		close(x.done)
	}
}

// own runs a claimed step: it answers a stored result, or starts the step and, unless it is
// detached, waits for it. watched reports a detached step left running under a watcher, which
// then owns the execution.
func (e *Engine) own(ctx context.Context, x *execution, key stepKey, spec StepSpec, backend Backend) (res StepResult, watched bool, err error) {
	// Read the record again now that the step is claimed: a run that ended before the claim has
	// stored its result by then.
	st, err := e.store.Get(ctx, key.stage)
	if err != nil {
		return StepResult{}, false, fmt.Errorf("execute step %s: %w", spec.ID, err)
	}
	if err := stageRunnable(st); err != nil {
		return StepResult{}, false, fmt.Errorf("execute step %s: %w", spec.ID, err)
	}
	if rec := st.Steps[spec.ID]; rec != nil && rec.Result != nil {
		return *rec.Result, false, nil
	}
	log := e.log.With("stage", key.stage, "step", spec.ID)

	run, hostFiles, err := e.prepare(st, &spec, backend)
	if err != nil {
		return StepResult{}, false, err
	}
	secrets := append(slices.Clone(st.Spec.Secrets), spec.Secrets...)
	w := e.openLog(ctx, st, spec.LogKey, spec.ID, secrets)
	run.Output = w

	started := time.Now().UTC()
	res = StepResult{Started: started}
	runCtx := x.ctx
	cancelTimeout := func() {}
	if spec.Timeout > 0 {
		timer := time.AfterFunc(spec.Timeout, func() { x.cancel(errStepTimeout) })
		cancelTimeout = func() { timer.Stop() }
	}
	if !spec.Detach {
		defer cancelTimeout()
	}

	var proc Process
	if err = runCtx.Err(); err == nil {
		proc, err = backend.Start(runCtx, run)
	}
	if err != nil {
		_, _ = fmt.Fprintf(w, "The step could not start: %v\n", err)
		_ = e.closeLog(ctx, w, log)
		if errors.Is(err, ErrNotAllowed) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNoBackend) {
			cancelTimeout()
			return StepResult{}, false, fmt.Errorf("step %s: %w", spec.ID, err)
		}
		if runCtx.Err() != nil {
			res = e.interrupted(runCtx, spec, res)
		} else {
			res.Status, res.ExitCode, res.Error = StepError, exitInternal, err.Error()
		}
		res.Stopped = time.Now().UTC()
		e.recordStep(ctx, key, spec, backend, started, &res, nil)
		cancelTimeout()
		return res, false, nil
	}
	e.recordStep(ctx, key, spec, backend, started, nil, nil)
	log.Info("step started", "backend", backend.Name(), "detached", spec.Detach)

	if spec.Detach {
		res.Status = StepRunning
		e.recordStep(ctx, key, spec, backend, started, &res, nil)
		x.result = res
		close(x.done)
		go func() {
			defer cancelTimeout()
			e.watch(runCtx, x, key, spec, backend, proc, w, hostFiles, started)
		}()
		return res, true, nil
	}
	return e.await(ctx, runCtx, key, spec, backend, proc, w, hostFiles, started), false, nil
}

// watch waits for a detached step until it ends or Cleanup stops it, and records how it ended.
func (e *Engine) watch(runCtx context.Context, x *execution, key stepKey, spec StepSpec, backend Backend,
	proc Process, w *logstream.Writer, hostFiles stepFiles, started time.Time) {
	defer close(x.ended)
	res := e.await(context.WithoutCancel(runCtx), runCtx, key, spec, backend, proc, w, hostFiles, started)
	e.mu.Lock()
	if e.running[key] == x {
		delete(e.running, key)
	}
	e.mu.Unlock()
	x.cancel(nil)
	e.log.Info("detached step ended", "stage", key.stage, "step", spec.ID, "status", res.Status)
}

// await waits for a started step, stops it when runCtx ends, reads its outputs, closes its log and
// stores its result.
func (e *Engine) await(ctx, runCtx context.Context, key stepKey, spec StepSpec, backend Backend,
	proc Process, w *logstream.Writer, hostFiles stepFiles, started time.Time) StepResult {
	log := e.log.With("stage", key.stage, "step", spec.ID)
	res := StepResult{Started: started}
	exit, waitErr := proc.Wait(runCtx)
	if waitErr != nil {
		// The step's context ended, or the backend lost track of it: stop what is left.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*e.opts.KillGrace+time.Minute)
		if serr := proc.Stop(stopCtx, e.opts.KillGrace); serr != nil {
			log.Warn("could not stop the step", "err", serr)
		}
		exit, err := proc.Wait(stopCtx)
		cancel()
		if err != nil {
			exit = Exit{Code: exitInternal}
		}
		if runCtx.Err() != nil {
			res = e.interrupted(runCtx, spec, res)
		} else {
			res.Status, res.Error = StepError, fmt.Sprintf("waiting for the step: %v", waitErr)
		}
		res.ExitCode = exit.Code
	} else {
		res.ExitCode, res.OOMKilled = exit.Code, exit.OOMKilled
		switch {
		case exit.OOMKilled:
			res.Status, res.Error = StepFailure, "oom killed"
		case exit.Code != 0:
			res.Status, res.Error = StepFailure, fmt.Sprintf("exit status %d", exit.Code)
		default:
			res.Status = StepSuccess
		}
	}

	if err := collectOutputs(&spec, hostFiles, &res); err != nil {
		if res.Status == StepSuccess {
			res.Status, res.Error = StepFailure, err.Error()
		}
		log.Warn("could not read the step's outputs", "err", err)
	}
	if res.Status == StepSuccess {
		art, err := readArtifact(hostFiles.artifact)
		if err != nil {
			log.Warn("could not read the step's artifact file", "err", err)
		}
		res.Artifact = art
	}
	exports, err := readDotenv(hostFiles.export)
	if err != nil {
		log.Warn("could not read the step's exported variables", "err", err)
		exports = nil
	}

	if err := e.closeLog(ctx, w, log); err != nil && res.Status == StepSuccess {
		res.Status, res.Error = StepFailure, fmt.Sprintf("the step's log upload failed: %v", err)
	}
	res.Stopped = time.Now().UTC()
	e.recordStep(ctx, key, spec, backend, started, &res, exports)
	return res
}

// interrupted fills in the result of a step whose context ended: its timeout or an abort.
func (e *Engine) interrupted(runCtx context.Context, spec StepSpec, res StepResult) StepResult {
	cause := context.Cause(runCtx)
	if errors.Is(cause, errStepTimeout) {
		res.Status, res.Error = StepTimeout, fmt.Sprintf("step timed out after %s", spec.Timeout)
	} else {
		res.Status, res.Error = StepAborted, fmt.Sprintf("step aborted: %v", cause)
	}
	if res.ExitCode == 0 {
		res.ExitCode = exitInternal
	}
	return res
}

// recordStep writes the step's record: at its start (res nil) and at its end, with the variables
// it exported for later host steps.
func (e *Engine) recordStep(ctx context.Context, key stepKey, spec StepSpec, backend Backend, started time.Time,
	res *StepResult, exports map[string]string) {
	_, err := e.store.Update(context.WithoutCancel(ctx), key.stage, func(s *Stage) error {
		if s.Steps == nil {
			s.Steps = map[string]*StepRecord{}
		}
		rec := s.Steps[spec.ID]
		if rec == nil || !rec.Started.Equal(started) {
			rec = &StepRecord{ID: spec.ID, Name: spec.Name, Backend: backend.Name(), Detached: spec.Detach, Started: started}
			s.Steps[spec.ID] = rec
		}
		rec.Result = res
		if len(exports) > 0 {
			if s.Exports == nil {
				s.Exports = map[string]string{}
			}
			maps.Copy(s.Exports, exports)
		}
		return nil
	})
	if err != nil {
		e.log.Warn("could not record the step", "stage", key.stage, "step", spec.ID, "err", err)
	}
}

// prepare assembles the run of a step: environment, working directory, script with its output
// lines, and the step's files. It returns the output files' host paths too.
func (e *Engine) prepare(st *Stage, spec *StepSpec, backend Backend) (Run, stepFiles, error) {
	spec.Entrypoint = slices.Clone(spec.Entrypoint)
	spec.Commands = slices.Clone(spec.Commands)
	onHost := backend == e.opts.Host
	if onHost && len(spec.Entrypoint) == 0 && len(spec.Commands) > 0 {
		spec.Entrypoint = []string{"sh", "-c"}
	}
	paths := backend.Paths(st)
	stem := fileStem(spec.ID)
	join := path.Join
	if onHost {
		join = filepath.Join
	}
	viewFiles := newStepFiles(paths.Shared, stem, join)
	hostFiles := newStepFiles(st.Shared, stem, filepath.Join)

	env := maps.Clone(st.Spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	if onHost {
		maps.Copy(env, st.Exports)
	}
	maps.Copy(env, spec.Env)
	maps.Copy(env, viewFiles.env())

	b64 := spec.Env[EnvNewGodotenv] == "true" || st.Spec.Env[EnvNewGodotenv] == "true"
	if err := appendOutputScript(spec, viewFiles, b64); err != nil {
		return Run{}, stepFiles{}, err
	}

	dir, hostDir, err := workingDir(st, spec, paths, onHost)
	if err != nil {
		return Run{}, stepFiles{}, err
	}
	// A repeated run (after a crash) must not read the outputs of the run before it.
	for _, f := range []string{hostFiles.output, hostFiles.secrets, hostFiles.export, hostFiles.artifact, hostFiles.annotations} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Run{}, stepFiles{}, fmt.Errorf("step %s: %w", spec.ID, err)
		}
	}
	if err := os.MkdirAll(hostFiles.scratch, 0o777); err != nil {
		return Run{}, stepFiles{}, fmt.Errorf("step %s: scratch directory: %w", spec.ID, err)
	}
	if hostDir != "" {
		if err := os.MkdirAll(hostDir, 0o777); err != nil {
			return Run{}, stepFiles{}, fmt.Errorf("step %s: working directory: %w", spec.ID, err)
		}
	}
	if err := createFiles(st, spec.Files); err != nil {
		return Run{}, stepFiles{}, fmt.Errorf("step %s: %w", spec.ID, err)
	}
	return Run{Stage: st, Step: spec, Env: env, WorkingDir: dir}, hostFiles, nil
}

// workingDir resolves a step's working directory as the step sees it, and, when it lies in the
// stage's workspace, its host path (so it can be created).
func workingDir(st *Stage, spec *StepSpec, paths StepPaths, onHost bool) (dir, hostDir string, err error) {
	wd := spec.WorkingDir
	if onHost {
		switch {
		case wd == "":
			return st.Workspace, st.Workspace, nil
		case !filepath.IsAbs(wd):
			p := filepath.Join(st.Workspace, wd)
			if !within(st.Workspace, p) {
				return "", "", invalidf("step %s: working directory %q leaves the workspace", spec.ID, wd)
			}
			return p, p, nil
		}
		p := hostPath(st, wd)
		if within(st.Workspace, p) {
			return p, p, nil
		}
		return p, "", nil
	}
	switch {
	case wd == "":
		wd = paths.Workspace
	case !path.IsAbs(wd):
		wd = path.Join(paths.Workspace, wd)
	}
	wd = path.Clean(wd)
	if rest, ok := strings.CutPrefix(wd, paths.Workspace); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
		return wd, filepath.Join(st.Workspace, rest), nil
	}
	return wd, "", nil
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// cancelStage cancels this process's executions of the stage and returns them.
func (e *Engine) cancelStage(stageID string) []*execution {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execution
	for k, x := range e.running {
		if k.stage == stageID {
			x.cancel(errCleanup)
			out = append(out, x)
		}
	}
	return out
}

// waitStage waits for cancelled executions to end, or for ctx.
func (e *Engine) waitStage(ctx context.Context, execs []*execution) {
	for _, x := range execs {
		select {
		case <-x.ended:
		case <-ctx.Done():
			return
		}
	}
}

// openLog opens the log stream of a step (or of setup) from the stage's log config. Without a
// transport (no factory, no key, or a stage without a log service) the log goes to a file under
// the stage's directory, masked and capped the same way, and is removed at cleanup.
func (e *Engine) openLog(ctx context.Context, st *Stage, key, name string, secrets []string) *logstream.Writer {
	var t logstream.Transport
	var opts logstream.Options
	if e.opts.Logs != nil && key != "" {
		var err error
		if t, opts, err = e.opts.Logs.Transport(st.Spec.Logs); err != nil {
			e.log.Warn("the stage's log config is unusable; the log is kept in a local file", "stage", st.Spec.ID, "err", err)
			t = nil
		}
	}
	if t == nil {
		t, opts = fileTransport{path: filepath.Join(e.stageDir(st.Spec.ID), logsDir, fileStem(name)+".log")}, logstream.Options{}
		if key == "" {
			key = name
		}
	}
	if secrets == nil {
		secrets = st.Spec.Secrets
	}
	opts.Secrets = append(slices.Clone(opts.Secrets), secrets...)
	opts.Logger = e.log
	return logstream.NewWriter(context.WithoutCancel(ctx), t, key, opts)
}

// closeLog flushes and uploads a log, bounded in time even when ctx has ended.
func (e *Engine) closeLog(ctx context.Context, w *logstream.Writer, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logCloseTimeout)
	defer cancel()
	err := w.Close(cctx)
	if err != nil {
		log.Warn("the step's log upload failed", "err", err)
	}
	return err
}

// fileTransport keeps a stream's history in a local file (mode 0600), for stages without a log
// service.
type fileTransport struct{ path string }

func (fileTransport) Open(context.Context, string) error                    { return nil }
func (fileTransport) Write(context.Context, string, []logstream.Line) error { return nil }
func (fileTransport) Close(context.Context, string, bool) error             { return nil }

func (f fileTransport) Upload(_ context.Context, _ string, history []logstream.Line) error {
	var b strings.Builder
	for _, l := range history {
		b.WriteString(l.Out)
		if !strings.HasSuffix(l.Out, "\n") {
			b.WriteByte('\n')
		}
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(f.path, []byte(b.String()), 0o600)
}
