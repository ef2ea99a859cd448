package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/procgroup"
)

// DefaultKillGrace is how long a stopped step's processes get between SIGTERM and SIGKILL when
// Options.KillGrace is not set.
const DefaultKillGrace = 10 * time.Second

// The variables that label a step's processes, the host's counterpart of container labels: every
// process a step starts inherits them, so DestroyStage finds a stage's processes even when they
// were started by a runner process that has since died.
const (
	EnvLabelStage  = "IO_DLITE_STAGE"
	EnvLabelRunner = "IO_DLITE_RUNNER"
	EnvLabelStep   = "IO_DLITE_STEP"
)

// BaseEnv names the variables of the runner's own environment a step inherits; everything else a
// step sees comes from the environment the engine assembled.
var BaseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "TZ"}

// defaultPath is a step's PATH when neither the runner nor the stage has one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// exitInternal is the exit code of a step the backend could not wait for properly.
const exitInternal = 255

// Options configure a Backend.
type Options struct {
	// RunnerID labels every process the backend starts.
	RunnerID string
	// KillGrace is how long processes get between SIGTERM and SIGKILL; DefaultKillGrace when 0.
	KillGrace time.Duration
	// Logger receives the backend's own messages; nil discards them.
	Logger *slog.Logger
}

// Backend runs steps as processes of the runner's host. It is safe for concurrent use.
type Backend struct {
	opts    Options
	log     *slog.Logger
	environ func() []string

	mu   sync.Mutex
	live map[stepKey]*process
}

type stepKey struct{ stage, step string }

var _ engine.Backend = (*Backend)(nil)

// New returns a host backend.
func New(opts Options) *Backend {
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		opts:    opts,
		log:     log.With("backend", "host"),
		environ: os.Environ,
		live:    map[stepKey]*process{},
	}
}

// Name is "host".
func (b *Backend) Name() string { return "host" }

// Paths are the stage record's own directories: host steps see the host.
func (b *Backend) Paths(st *engine.Stage) engine.StepPaths {
	return engine.StepPaths{Workspace: st.Workspace, Shared: st.Shared}
}

// SetupStage checks that the stage's directories exist; the host needs nothing else.
func (b *Backend) SetupStage(_ context.Context, st *engine.Stage) error {
	for _, dir := range []string{st.Workspace, st.Shared} {
		info, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("host setup of stage %s: %w", st.Spec.ID, err)
		}
		if !info.IsDir() {
			return fmt.Errorf("host setup of stage %s: %s is not a directory", st.Spec.ID, dir)
		}
	}
	return nil
}

// Start runs the step's entrypoint followed by its commands in a process group of its own, with
// exactly r.Env plus BaseEnv and the label variables. A step id that is running in this backend
// is not started again: its process is returned. Processes of the same step left by a runner
// process that died are stopped first, since they cannot be waited for. ctx bounds only the
// start; the process runs until it ends or is stopped.
func (b *Backend) Start(ctx context.Context, r engine.Run) (engine.Process, error) {
	if r.Stage == nil || r.Step == nil {
		return nil, fmt.Errorf("%w: a run needs its stage and step", engine.ErrInvalid)
	}
	key := stepKey{stage: r.Stage.Spec.ID, step: r.Step.ID}
	argv := append(slices.Clone(r.Step.Entrypoint), r.Step.Commands...)
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%w: step %s has no entrypoint and no commands", engine.ErrInvalid, r.Step.ID)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.live[key]; p != nil {
		return p, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := b.sweep(ctx, labels{stage: key.stage, step: key.step}); err != nil {
		return nil, fmt.Errorf("stop leftovers of step %s: %w", key.step, err)
	}

	env := b.env(r)
	path, err := lookPath(argv[0], envValue(env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("step %s: %w", r.Step.ID, err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = r.WorkingDir
	cmd.Env = env
	cmd.SysProcAttr = procgroup.SysProcAttr()
	// The step writes into a pipe of our own rather than one exec.Cmd copies from, so that
	// waiting for the step does not wait for background processes still holding it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("step %s: output pipe: %w", r.Step.ID, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("start step %s: %w", r.Step.ID, err)
	}
	_ = pw.Close()

	out := r.Output
	if out == nil {
		out = io.Discard
	}
	p := &process{
		pgid:   cmd.Process.Pid,
		done:   make(chan struct{}),
		copied: make(chan struct{}),
	}
	go func() {
		defer close(p.copied)
		_, _ = io.Copy(out, pr)
	}()
	b.live[key] = p
	b.log.Debug("step started", "stage", key.stage, "step", key.step, "pid", p.pgid, "dir", cmd.Dir)
	go b.wait(key, cmd, pr, p)
	return p, nil
}

// wait reaps the step, ends what it left running in its group, drains its output and then
// marks the process done.
func (b *Backend) wait(key stepKey, cmd *exec.Cmd, pr *os.File, p *process) {
	err := cmd.Wait()
	exit := engine.Exit{Code: exitInternal}
	if state := cmd.ProcessState; state != nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.Code = 128 + int(ws.Signal())
		} else {
			exit.Code = state.ExitCode()
		}
	} else if err != nil {
		b.log.Warn("could not wait for a step", "stage", key.stage, "step", key.step, "err", err)
	}
	p.group.Stop(p.pgid, b.opts.KillGrace)
	// Everything in the group is gone, so the pipe reaches its end; a process that left the
	// group and kept the pipe open gets one grace period before its output is cut off.
	t := time.NewTimer(b.opts.KillGrace)
	select {
	case <-p.copied:
	case <-t.C:
		b.log.Warn("a process outside the step's group holds its output open; the output is cut off",
			"stage", key.stage, "step", key.step)
	}
	t.Stop()
	_ = pr.Close()
	<-p.copied

	b.mu.Lock()
	if b.live[key] == p {
		delete(b.live, key)
	}
	b.mu.Unlock()
	p.exit = exit
	close(p.done)
	b.log.Debug("step ended", "stage", key.stage, "step", key.step, "exitCode", exit.Code)
}

// DestroyStage stops every process of the stage: those this backend started, and those labelled
// with the stage and this runner that a runner process which died left behind.
func (b *Backend) DestroyStage(ctx context.Context, stageID string) error {
	b.mu.Lock()
	var procs []*process
	for k, p := range b.live {
		if k.stage == stageID {
			procs = append(procs, p)
		}
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(procs)+1)
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Stop(ctx, b.opts.KillGrace) })
	}
	wg.Wait()
	errs[len(procs)] = b.sweep(ctx, labels{stage: stageID})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host cleanup of stage %s: %w", stageID, err)
	}
	return nil
}

// env is the step's environment: BaseEnv from the runner's environment, then the assembled
// environment, then the labels, sorted.
func (b *Backend) env(r engine.Run) []string {
	vars := map[string]string{}
	for _, kv := range b.environ() {
		name, value, ok := strings.Cut(kv, "=")
		if ok && slices.Contains(BaseEnv, name) && !procgroup.IsRunnerSetting(name) {
			vars[name] = value
		}
	}
	if vars["PATH"] == "" {
		vars["PATH"] = defaultPath
	}
	for name, value := range r.Env {
		vars[name] = value
	}
	vars[EnvLabelStage] = r.Stage.Spec.ID
	vars[EnvLabelRunner] = b.opts.RunnerID
	vars[EnvLabelStep] = r.Step.ID
	out := make([]string, 0, len(vars))
	for name, value := range vars {
		out = append(out, name+"="+value)
	}
	slices.Sort(out)
	return out
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds name on the step's PATH, then on the runner's.
func lookPath(name, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on the step's PATH: %w", name, err)
	}
	return p, nil
}

// process is a step's process group.
type process struct {
	pgid   int
	group  procgroup.Group
	done   chan struct{}
	copied chan struct{}
	exit   engine.Exit
}

var _ engine.Process = (*process)(nil)

// Wait waits for the step and everything it started in its group to end.
func (p *process) Wait(ctx context.Context) (engine.Exit, error) {
	select {
	case <-p.done:
		return p.exit, nil
	case <-ctx.Done():
		return engine.Exit{}, context.Cause(ctx)
	}
}

// Stop sends SIGTERM to the step's group, SIGKILL after grace, and waits for the step to end.
func (p *process) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.group.Stop(p.pgid, grace)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop process group %d: %w", p.pgid, context.Cause(ctx))
	}
}
