package dlite

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/google/wire"
	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/docker"
	"github.com/dlite-dev/dlite/internal/engine/host"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/harnesslog"
	"github.com/dlite-dev/dlite/tasks/ci"
)

// ciSet builds the stage engine once per runner and the CI task server over it, when the runner
// runs CI stages.
var ciSet = wire.NewSet(provideStageEngine, provideCITasks)

// dockerStartTimeout bounds the search for a Docker daemon at start.
const dockerStartTimeout = 15 * time.Second

// stageEngine is the runner's stage engine; nil when the runner runs no CI stages.
type stageEngine struct{ *engine.Engine }

// ciTasks is the CI task server; its Register is nil when the runner runs no CI stages.
type ciTasks dispatch.TaskServer

// provideStageEngine builds the stage engine: stage records under DLITE_STATE_DIR, steps on the
// host and, as DLITE_DOCKER says, in Docker, and step logs to the Harness log service. Its cleanup
// releases the Docker client; stages live on, on disk, for the next runner on this state directory.
func provideStageEngine(cfg *config.Config, h handlers, logger *slog.Logger) (stageEngine, func(), error) {
	if !h.CI {
		return stageEngine{}, func() {}, nil
	}
	const op = "stage engine"
	store, err := engine.NewFileStore(cfg.StateDir)
	if err != nil {
		return stageEngine{}, nil, errs.Wrap(errs.CodeInvalidConfig, op, fmt.Errorf("state directory (DLITE_STATE_DIR): %w", err))
	}
	id := runnerID(cfg)
	opts := engine.Options{
		Store:    store,
		Host:     host.New(host.Options{RunnerID: id, Logger: logger}),
		Logs:     logstream.Registry{"harness": harnesslog.NewFactory(&http.Client{Timeout: 2 * time.Minute})},
		RunnerID: id,
		StateDir: cfg.StateDir,
		Logger:   logger.With("component", "engine"),
	}
	cleanup := func() {}
	if cfg.Docker != config.DockerOff {
		ctx, cancel := context.WithTimeout(context.Background(), dockerStartTimeout)
		d, err := docker.New(ctx, docker.Options{RunnerID: id, AllowPrivileged: cfg.DockerAllowPrivileged,
			AllowDockerSocket: cfg.DockerAllowSocket, Logger: logger})
		cancel()
		switch {
		case err == nil:
			opts.Docker, cleanup = d, func() { _ = d.Close() }
		case cfg.Docker == config.DockerOn:
			return stageEngine{}, nil, errs.Wrap(errs.CodeInvalidConfig, op, fmt.Errorf("DLITE_DOCKER is on: %w", err))
		default:
			logger.Warn("no Docker daemon: CI steps with an image will fail; host steps run", "err", err)
		}
	}
	e, err := engine.New(opts)
	if err != nil {
		cleanup()
		return stageEngine{}, nil, errs.Wrap(errs.CodeInvalidConfig, op, err)
	}
	logger.Info("stage engine ready", "state_dir", cfg.StateDir, "docker", opts.Docker != nil, "runner_id", id)
	return stageEngine{e}, cleanup, nil
}

// provideCITasks is the task server of the six CI stage task types over the engine. Its handlers
// log through the task's logger, which the runtime hands them.
func provideCITasks(e stageEngine) (ciTasks, error) {
	if e.Engine == nil {
		return ciTasks{}, nil
	}
	h, err := ci.New(ci.Options{Engine: e.Engine})
	if err != nil {
		return ciTasks{}, errs.Wrap(errs.CodeInvalidConfig, "CI tasks", err)
	}
	return ciTasks{Spec: citasks.GetSpec, Register: func(e *echo.Echo) { h.Register(e) }}, nil
}

// runnerID is the identity the engine labels its containers, networks, volumes and processes
// with: stable across restarts (the runner's name and host, as the manager knows it), so a
// restarted runner finds what it created before.
func runnerID(cfg *config.Config) string {
	hostName, err := os.Hostname()
	if err != nil || hostName == "" {
		hostName = "unknown"
	}
	name := cfg.Name
	if name == "" || name == hostName {
		return hostName
	}
	return name + "@" + hostName
}
