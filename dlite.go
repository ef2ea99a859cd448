package dlite

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/dispatch"
)

// Config is a runner's configuration. Fill it with LoadConfig; the fields document the flag and
// environment variable each comes from.
type Config = config.Config

// DemoDrone is the Config.Demo (DLITE_DEMO) of the Drone demonstration.
const DemoDrone = config.DemoDrone

// TLS is the part of Config that says how the runner trusts the manager.
type TLS = config.TLS

// DockerMode says whether a runner runs CI steps in containers (Config.Docker, DLITE_DOCKER).
type DockerMode = config.DockerMode

// The Docker modes.
const (
	// DockerAuto runs container steps when a Docker daemon answers at start.
	DockerAuto = config.DockerAuto
	// DockerOn requires a Docker daemon at start.
	DockerOn = config.DockerOn
	// DockerOff runs host steps only.
	DockerOff = config.DockerOff
)

// LoadConfig fills a Config from command-line flags (args, without the program or subcommand
// name) and the environment (env, usually os.LookupEnv), flags winning, and validates it. With
// -h or --help it writes the documentation of every setting to stderr and returns flag.ErrHelp.
// Errors name the setting that is wrong.
func LoadConfig(args []string, env func(string) (string, bool), stderr io.Writer) (*Config, error) {
	return config.Load(args, env, stderr)
}

// TaskServer is a generated task server: the spec it was generated from and a function that
// registers the generated handlers on an echo instance. For a spec generated into package gen:
//
//	dlite.TaskServer{
//		Spec:     gen.GetSpec,
//		Register: func(e *echo.Echo) { gen.RegisterHandlers(e, gen.NewStrictHandler(impl, nil)) },
//	}
//
// Every operation in the spec must be `POST /tasks/<TASK_TYPE>`.
type TaskServer = dispatch.TaskServer

// Options say what a runner runs and how.
type Options struct {
	// Config is the runner's configuration. Required; it must have a manager endpoint.
	Config *Config
	// TaskServers are the generated task servers whose task types the runner supports.
	TaskServers []TaskServer
	// LegacyHandlers maps task types to plain http.Handlers written for the old dlite library.
	// Each is called with a POST whose body is the whole task as JSON; a 2xx answer is success
	// with the body as the task's output (an empty body counts as {}), any other status is a
	// failure whose body is the error. A handler that never calls WriteHeader answered 200.
	LegacyHandlers map[string]http.Handler
	// CITasks runs the Harness CI stage task types (DLITE_CI_VM_* and CI_DOCKER_*, see
	// openapi/citasks.yaml) on a stage engine built from the configuration: stage records under
	// DLITE_STATE_DIR, steps on the host and, as DLITE_DOCKER says, in Docker.
	CITasks bool
	// Logger receives the runner's logs; nil uses Config.NewLogger on standard error.
	Logger *slog.Logger
}

// Runner is an assembled runner. Start it with Run; stop it with Shutdown (graceful) or by
// cancelling Run's context (immediate).
type Runner struct {
	rt        *runtime
	cleanup   func()
	closeOnce sync.Once
	logger    *slog.Logger
}

// New assembles a runner. It fails when the configuration is invalid, a task spec cannot be
// loaded or breaks the `POST /tasks/<TASK_TYPE>` convention, no task type is supported, the
// spool is held by another runner, or the status endpoint's address (DLITE_HTTP_ADDR) is taken.
func New(opts Options) (*Runner, error) {
	if opts.Config == nil {
		return nil, errs.New(errs.CodeInvalidConfig, "dlite.New", "Options.Config is required")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Config.Embedded() {
		return nil, errs.New(errs.CodeInvalidConfig, "dlite.New",
			"no manager endpoint: set DLITE_MANAGER_ENDPOINT (or start a mock manager and point the runner at it)")
	}
	if len(opts.TaskServers) == 0 && len(opts.LegacyHandlers) == 0 && !opts.CITasks {
		return nil, errs.New(errs.CodeInvalidConfig, "dlite.New", "no task handlers: give at least one TaskServer or legacy handler")
	}
	logger := opts.Logger
	if logger == nil {
		logger = opts.Config.NewLogger(os.Stderr)
	}
	rt, cleanup, err := assemble(opts.Config, handlers{Servers: opts.TaskServers, Legacy: opts.LegacyHandlers, CI: opts.CITasks}, logger)
	if err != nil {
		return nil, err
	}
	return &Runner{rt: rt, cleanup: cleanup, logger: logger}, nil
}

// TaskTypes returns the task types the runner supports, sorted: what it registers with.
func (r *Runner) TaskTypes() []string { return r.rt.Identity.TaskTypes }

// Run registers with the manager and runs tasks until ctx ends (a hard stop: running tasks are
// cancelled and reported) or Shutdown is called (a graceful stop). It releases the runner's
// resources before returning; a runner runs once.
func (r *Runner) Run(ctx context.Context) error {
	defer r.Close()
	r.logger.Info("runner starting", "name", r.rt.Identity.Name, "task_types", r.rt.Identity.TaskTypes,
		"parallel_workers", r.rt.Pool.Size(), "spool", r.rt.Spool.Dir())
	if srv := r.rt.HTTP; srv != nil {
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		// The endpoint lives as long as the runner: through the drain, so probes see it, and no
		// longer, so a stopped runner answers nothing.
		defer func() {
			stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownWait)
			defer cancel()
			_ = srv.Shutdown(stop)
			if err := <-served; err != nil {
				r.logger.Warn("status endpoint failed", "err", err)
			}
		}()
	}
	return r.rt.Runner.Run(ctx)
}

// StatusURL returns the address of the runner's status page and metrics (DLITE_HTTP_ADDR), or ""
// when the endpoint is off.
func (r *Runner) StatusURL() string {
	if r.rt.HTTP == nil {
		return ""
	}
	return "http://" + r.rt.HTTP.Addr().String() + "/"
}

// httpShutdownWait bounds how long requests to the status endpoint may take to finish once the
// runner has stopped.
const httpShutdownWait = 5 * time.Second

// Shutdown stops the runner gracefully: it stops taking work at once, lets running tasks finish
// until ctx ends (cancel ctx early to cancel them sooner), reports every one, and returns when Run
// has returned.
func (r *Runner) Shutdown(ctx context.Context) error { return r.rt.Runner.Shutdown(ctx) }

// Close releases what the runner holds (its spool's lock and its status endpoint's address)
// without running it. Run calls it.
func (r *Runner) Close() error {
	r.closeOnce.Do(r.cleanup)
	return nil
}
