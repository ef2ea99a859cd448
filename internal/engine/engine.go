package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// DefaultKillGrace is how long a stopped step gets between the graceful signal and the kill when
// Options.KillGrace is not set.
const DefaultKillGrace = 10 * time.Second

// Where container steps see the stage's directories unless the stage says otherwise
// (StageSpec.WorkspacePath). A host step's working directory or file under ContainerWorkspace, the
// stage's own workspace path or ContainerShared is mapped into the stage's own directory, so a
// stage written for containers runs on the host as well.
const (
	ContainerWorkspace = "/harness"
	ContainerShared    = "/tmp/engine"
)

// ErrSetupFailed is returned by a repeated Setup of a stage whose setup failed; the error says
// why it failed the first time.
var ErrSetupFailed = errors.New("stage setup failed")

// errCleanup is why steps are cancelled by Cleanup.
var errCleanup = errors.New("the stage is being cleaned up")

const (
	stagesDirName = "stages"
	workspaceDir  = "workspace"
	sharedDir     = "shared"
	logsDir       = "logs"
	// logCloseTimeout bounds flushing and uploading a step's log after the step ended.
	logCloseTimeout = 2 * time.Minute
)

// Options configure an Engine.
type Options struct {
	// Store keeps the stage records. Required.
	Store Store
	// Host runs steps without an image. Required.
	Host Backend
	// Docker runs steps with an image; nil when the runner has no Docker.
	Docker Backend
	// Logs builds a stage's log transport from its record; nil: no live logs (each step's log is
	// kept in a file under the stage's directory until cleanup).
	Logs logstream.Factory
	// RunnerID is this runner's id, written into the records it creates. Required.
	RunnerID string
	// StateDir holds the stages' directories (workspace, shared files, local logs). Required.
	StateDir string
	// KillGrace is how long a stopped step gets between the graceful signal and the kill;
	// DefaultKillGrace when 0.
	KillGrace time.Duration
	// Logger receives the engine's own messages; nil discards them.
	Logger *slog.Logger
}

// Engine runs the stages of a runner: Setup, then any number of Execute calls, then Cleanup,
// each of which may come to a different Engine on the same StateDir and Store (after a restart).
// Nothing about a stage is kept in memory between calls except the handles of steps that are
// running, for joining a repeated Execute and for stopping them at Cleanup. It is safe for
// concurrent use.
type Engine struct {
	opts      Options
	log       *slog.Logger
	store     Store
	stagesDir string

	// stageLocks serialise Setup and Cleanup of one stage.
	stageLocks keyedMutex

	mu      sync.Mutex
	running map[stepKey]*execution
}

type stepKey struct{ stage, step string }

// New returns an Engine. It creates StateDir (mode 0700) when it is missing.
func New(opts Options) (*Engine, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("engine: no stage store")
	case opts.Host == nil:
		return nil, errors.New("engine: no host backend")
	case opts.RunnerID == "":
		return nil, errors.New("engine: no runner id")
	case opts.StateDir == "" || !filepath.IsAbs(opts.StateDir):
		return nil, fmt.Errorf("engine: the state directory %q is not an absolute path", opts.StateDir)
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		opts:      opts,
		log:       log,
		store:     opts.Store,
		stagesDir: filepath.Join(opts.StateDir, stagesDirName),
		running:   map[stepKey]*execution{},
	}
	for _, dir := range []string{opts.StateDir, e.stagesDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("engine: create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("engine: restrict %s: %w", dir, err)
		}
	}
	return e, nil
}

// stageDir is the directory of a stage: its workspace, shared files and local logs.
func (e *Engine) stageDir(id string) string {
	return filepath.Join(e.stagesDir, StageKey(id))
}

// backends are the configured backends, host first.
func (e *Engine) backends() []Backend {
	if e.opts.Docker != nil {
		return []Backend{e.opts.Host, e.opts.Docker}
	}
	return []Backend{e.opts.Host}
}

// Stages returns the stored stage records, oldest first.
func (e *Engine) Stages(ctx context.Context) ([]*Stage, error) {
	stages, err := e.store.List(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(stages, func(a, b *Stage) int { return a.Created.Compare(b.Created) })
	return stages, nil
}

// Setup sets a stage up: it validates the spec, stores the record in state initializing before
// it creates anything, creates the stage's directories, host volumes and files, sets the stage up
// in the host backend and, when the runner has Docker, in the Docker backend (always, since any
// later step may need a container and its network), starts the services, and stores the record
// as ready before it returns it.
//
// Setup is idempotent: a ready stage's stored record is returned as it is; a stage whose setup
// failed answers the stored failure again (matching ErrSetupFailed); a stage left initializing by
// a runner process that died is set up again, keeping what exists.
func (e *Engine) Setup(ctx context.Context, spec StageSpec) (*Stage, error) {
	if err := e.validateStage(&spec); err != nil {
		return nil, err
	}
	defer e.stageLocks.lock(spec.ID)()

	dir := e.stageDir(spec.ID)
	st := &Stage{
		Spec:      spec,
		Runner:    e.opts.RunnerID,
		State:     StageInitializing,
		Workspace: filepath.Join(dir, workspaceDir),
		Shared:    filepath.Join(dir, sharedDir),
	}
	err := e.store.Create(ctx, st)
	if errors.Is(err, ErrStageExists) {
		if st, err = e.store.Get(ctx, spec.ID); err != nil {
			return nil, fmt.Errorf("setup of stage %s: %w", spec.ID, err)
		}
		switch {
		case st.SetupError != "":
			return nil, fmt.Errorf("%w: %s", ErrSetupFailed, st.SetupError)
		case st.State == StageReady:
			return st, nil
		case st.State == StageDestroying:
			return nil, fmt.Errorf("%w: stage %s is being cleaned up", ErrNotAllowed, spec.ID)
		}
		e.log.Info("setting up again a stage whose setup did not finish", "stage", spec.ID)
	} else if err != nil {
		return nil, fmt.Errorf("setup of stage %s: %w", spec.ID, err)
	}
	return e.build(ctx, st)
}

// build creates what the stage record st describes and stores it as ready.
func (e *Engine) build(ctx context.Context, st *Stage) (*Stage, error) {
	id := st.Spec.ID
	log := e.log.With("stage", id)
	// The local log of setup is named so no Harness step id (letters and digits) can clash with it.
	w := e.openLog(ctx, st, st.Spec.LogKey, "_setup", nil)
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format+"\n", args...) }
	closeLog := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logCloseTimeout)
		defer cancel()
		if err := w.Close(cctx); err != nil {
			log.Warn("could not upload the setup log", "err", err)
		}
	}

	fail := func(err error) (*Stage, error) {
		say("Setup failed: %v", err)
		closeLog()
		if ctx.Err() != nil {
			// An aborted setup is not a failed one: a repeated setup tries again.
			return nil, fmt.Errorf("setup of stage %s: %w", id, err)
		}
		msg := err.Error()
		if _, uerr := e.store.Update(context.WithoutCancel(ctx), id, func(s *Stage) error {
			s.SetupError = msg
			return nil
		}); uerr != nil {
			log.Error("could not record a failed setup", "err", uerr)
		}
		return nil, fmt.Errorf("%w: %w", ErrSetupFailed, err)
	}

	say("Setting up stage %s", id)
	if err := e.makeStageDirs(st); err != nil {
		return fail(err)
	}
	for _, v := range st.Spec.Volumes {
		if v.Host != nil && v.Host.Create {
			if err := os.MkdirAll(v.Host.Path, 0o755); err != nil {
				return fail(fmt.Errorf("create host volume %s: %w", v.Name, err))
			}
		}
	}
	if err := createFiles(st, st.Spec.Files); err != nil {
		return fail(err)
	}
	for _, b := range e.backends() {
		if err := b.SetupStage(ctx, st); err != nil {
			return fail(fmt.Errorf("%s backend: %w", b.Name(), err))
		}
	}
	if st.Network != "" {
		say("Network %s is ready", st.Network)
	}

	services := make([]ServiceStatus, 0, len(st.Spec.Services))
	for _, svc := range st.Spec.Services {
		svc.Detach = true
		status := ServiceStatus{ID: svc.ID, Name: svc.Name, Image: svc.Image, LogKey: svc.LogKey}
		res, err := e.execute(ctx, st, svc)
		switch {
		case err != nil:
			status.Error = err.Error()
		case res.Status != StepRunning:
			status.Error = res.Error
			if status.Error == "" {
				status.Error = fmt.Sprintf("the service ended at once (%s)", res.Status)
			}
		default:
			status.Running = true
		}
		if status.Running {
			say("Started service %s", svc.ID)
		} else {
			say("Service %s did not start: %s", svc.ID, status.Error)
		}
		services = append(services, status)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	network := st.Network
	st, err := e.store.Update(ctx, id, func(s *Stage) error {
		s.State = StageReady
		s.Network = network
		s.Services = services
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("store the ready stage: %w", err))
	}
	say("Stage %s is ready", id)
	closeLog()
	log.Info("stage set up", "services", len(services))
	return st, nil
}

// makeStageDirs creates the stage's directory (0700: it is the runner's) and in it the workspace
// and shared directories. Those two are open to every user (0777), because container steps may
// run as any user and see them through bind mounts, which check only the mounted directory's own
// permissions; the stage's private parent keeps other users of the host out.
func (e *Engine) makeStageDirs(st *Stage) error {
	dir := e.stageDir(st.Spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the stage directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, logsDir), 0o700); err != nil {
		return fmt.Errorf("create the stage's log directory: %w", err)
	}
	for _, d := range []string{st.Workspace, st.Shared} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return fmt.Errorf("open up %s: %w", d, err)
		}
	}
	return nil
}

// hostPath maps a path given for the stage (a working directory, a file) to the host: paths
// under the stage's container workspace, ContainerWorkspace and ContainerShared land in the
// stage's own directories.
func hostPath(st *Stage, p string) string {
	p = filepath.Clean(p)
	for _, m := range []struct{ from, to string }{
		{st.Spec.ContainerWorkspacePath(), st.Workspace},
		{ContainerWorkspace, st.Workspace},
		{ContainerShared, st.Shared},
	} {
		if p == m.from {
			return m.to
		}
		if rest, ok := strings.CutPrefix(p, m.from+"/"); ok {
			return filepath.Join(m.to, rest)
		}
	}
	return p
}

// createFiles creates files and directories on the host (mode 0600/0700 unless given).
func createFiles(st *Stage, files []File) error {
	for _, f := range files {
		p := hostPath(st, f.Path)
		mode := fs.FileMode(f.Mode).Perm()
		if f.IsDir {
			if mode == 0 {
				mode = 0o700
			}
			if err := os.MkdirAll(p, mode); err != nil {
				return fmt.Errorf("create directory %s: %w", f.Path, err)
			}
			if err := os.Chmod(p, mode); err != nil {
				return fmt.Errorf("create directory %s: %w", f.Path, err)
			}
			continue
		}
		if mode == 0 {
			mode = 0o600
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create file %s: %w", f.Path, err)
		}
		if err := os.WriteFile(p, []byte(f.Data), mode); err != nil {
			return fmt.Errorf("create file %s: %w", f.Path, err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("create file %s: %w", f.Path, err)
		}
	}
	return nil
}

// Cleanup destroys a stage: it marks the record destroying, stops the stage's running and
// detached steps (those of this process, and whatever each backend finds by the stage's labels),
// removes the stage's files, its host volumes marked remove and its directories, then deletes
// the record. A stage without a record (unknown, or never set up) still gets every backend's
// sweep and its directory removed, and answers nil. Cleanup is idempotent; when something cannot
// be removed it returns the error and keeps the record, so a repeated cleanup tries again.
func (e *Engine) Cleanup(ctx context.Context, stageID string) error {
	if stageID == "" {
		return invalidf("the stage has no id")
	}
	defer e.stageLocks.lock(stageID)()
	log := e.log.With("stage", stageID)

	st, err := e.store.Update(ctx, stageID, func(s *Stage) error {
		s.State = StageDestroying
		return nil
	})
	if errors.Is(err, ErrStageNotFound) {
		log.Info("cleaning up a stage without a record: sweeping by label")
		execs := e.cancelStage(stageID)
		errs := e.destroyInBackends(ctx, stageID)
		e.waitStage(ctx, execs)
		errs = append(errs, removeTree(e.stageDir(stageID)))
		for _, err := range errs {
			if err != nil {
				log.Warn("cleanup of an unknown stage left something behind", "err", err)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleanup of stage %s: %w", stageID, err)
	}

	execs := e.cancelStage(stageID)
	errs := e.destroyInBackends(ctx, stageID)
	e.waitStage(ctx, execs)
	for _, f := range st.Spec.Files {
		if err := removeStageFile(st, f); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range st.Spec.Volumes {
		if v.Host != nil && v.Host.Remove {
			if err := removeTree(v.Host.Path); err != nil {
				errs = append(errs, fmt.Errorf("remove host volume %s: %w", v.Name, err))
			}
		}
	}
	if err := removeTree(e.stageDir(stageID)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup of stage %s: %w", stageID, err)
	}
	if err := e.store.Delete(ctx, stageID); err != nil {
		return fmt.Errorf("cleanup of stage %s: %w", stageID, err)
	}
	log.Info("stage cleaned up")
	return nil
}

// removeStageFile removes a file setup created. A directory outside the stage's own directories
// is removed only when it is empty: it may have held things before the stage, and a recursive
// removal of a path from the manager is not a risk worth taking.
func removeStageFile(st *Stage, f File) error {
	p := hostPath(st, f.Path)
	var err error
	if f.IsDir && !within(st.Workspace, p) && !within(st.Shared, p) {
		err = os.Remove(p)
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return nil
		}
	} else {
		err = os.RemoveAll(p)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("remove file %s: %w", f.Path, err)
	}
	return nil
}

func (e *Engine) destroyInBackends(ctx context.Context, stageID string) []error {
	var errs []error
	for _, b := range e.backends() {
		if err := b.DestroyStage(ctx, stageID); err != nil {
			errs = append(errs, fmt.Errorf("%s backend: %w", b.Name(), err))
		}
	}
	return errs
}

// removeTree removes a directory tree. Steps can leave directories without write permission
// behind (Go's module cache does), so a failed removal is retried once after making every
// directory in the tree writable again.
func removeTree(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
