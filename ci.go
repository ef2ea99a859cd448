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
	"github.com/dlite-dev/dlite/gen/dronetasks"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/docker"
	"github.com/dlite-dev/dlite/internal/engine/host"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/harnesslog"
	"github.com/dlite-dev/dlite/tasks/ci"
	tasksdrone "github.com/dlite-dev/dlite/tasks/drone"
)

// ciSet builds the stage engine once per runner and the CI task server over it, when the runner
// runs CI stages.
var ciSet = wire.NewSet(provideStageEngine, provideCITasks, provideDroneTasks)

// leftoverCleanupTimeout bounds the cleanup, at start, of the stages an earlier run left
// unfinished.
const leftoverCleanupTimeout = 2 * time.Minute

// dockerStartTimeout bounds the search for a Docker daemon at start.
const dockerStartTimeout = 15 * time.Second

// stageEngine is the runner's stage engine; nil when the runner runs no CI stages.
type stageEngine struct {
	*engine.Engine
	// DroneLogs carries Drone step logs; nil unless the runner serves a Drone server.
	DroneLogs *tasksdrone.Logs
}

// droneTasks is the Drone stage task server; its Register is nil unless the runner serves a
// Drone server.
type droneTasks dispatch.TaskServer

// ciTasks is the CI task server; its Register is nil when the runner runs no CI stages.
type ciTasks dispatch.TaskServer

// provideStageEngine builds the stage engine: stage records under DLITE_STATE_DIR, steps on the
// host and, as DLITE_DOCKER says, in Docker, and step logs to the Harness log service. Its cleanup
// releases the Docker client; stages live on, on disk, for the next runner on this state directory.
// A runner serving a Drone server always has one: its stages run on it, their step logs going to
// the Drone server.
func provideStageEngine(cfg *config.Config, h handlers, b backend, logger *slog.Logger) (stageEngine, func(), error) {
	if !h.CI && b.Drone == nil {
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
	var droneLogs *tasksdrone.Logs
	if b.Drone != nil {
		droneLogs = tasksdrone.NewLogs(b.Drone, b.DroneStages)
		opts.Logs.(logstream.Registry)[tasksdrone.LogKind] = droneLogs
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
	return stageEngine{Engine: e, DroneLogs: droneLogs}, cleanup, nil
}

// provideDroneTasks is the task server of Drone stages over the engine, running at most
// DRONE_RUNNER_MAX_PROCS steps of a stage at once and the clone step of docker pipelines in
// DRONE_RUNNER_CLONE_IMAGE. Before the runner takes work, it removes what
// stages an earlier run left unfinished still hold in the engine.
func provideDroneTasks(cfg *config.Config, e stageEngine, b backend, logger *slog.Logger) (droneTasks, error) {
	if b.Drone == nil || e.Engine == nil {
		return droneTasks{}, nil
	}
	h, err := tasksdrone.New(tasksdrone.Options{Engine: e.Engine, Logs: e.DroneLogs, MaxParallel: cfg.Drone.MaxProcs,
		CloneImage: cfg.Drone.CloneImage})
	if err != nil {
		return droneTasks{}, errs.Wrap(errs.CodeInvalidConfig, "Drone stage tasks", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), leftoverCleanupTimeout)
	defer cancel()
	if _, err := h.CleanupLeftovers(ctx, logger); err != nil {
		logger.Error("could not clean up what Drone stages of an earlier run left behind", "err", err)
	}
	return droneTasks{Spec: dronetasks.GetSpec, Register: func(e *echo.Echo) { h.Register(e) }}, nil
}

// provideCITasks is the task server of the six CI stage task types over the engine. Its handlers
// log through the task's logger, which the runtime hands them.
func provideCITasks(hs handlers, e stageEngine) (ciTasks, error) {
	if e.Engine == nil || !hs.CI {
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
