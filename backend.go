package dlite

import (
	"log/slog"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/retry"
)

// droneCallTimeout bounds one call to a Drone server: above its 30 s long polls.
const droneCallTimeout = time.Minute

// droneStateDir is the directory, in the stage engine's state directory, where the Drone backend
// keeps the stages accepted and not yet reported.
const droneStateDir = "drone"

// droneStopMargin is what a cancelled Drone stage may take beyond its steps' kill grace to
// answer: the step updates and the engine's cleanup.
const droneStopMargin = 20 * time.Second

// backend is the manager the runtime talks to, as configured: a Harness manager, or a Drone
// server when DRONE_RPC_HOST is set. Above it, the runtime is the same for both.
type backend struct {
	manager.Manager
	// Aborts names tasks the manager stops outside its polls; nil when it has no such source.
	Aborts <-chan string
	// NewOfferBackoff is the backoff of the poller's offer loops; nil for the poller's default.
	NewOfferBackoff func() poller.OfferBackoff
	// CallTimeout bounds one poll or acquire; 0 for the poller's default.
	CallTimeout time.Duration
	// UnauthorizedBackoff is the session's wait after refused credentials; zero for its default.
	UnauthorizedBackoff retry.Policy
	// Drone is the Drone server's client, which running stages send their live logs to; nil for
	// a Harness manager.
	Drone *drone.Client
	// DroneStages is the Drone backend, which knows the steps of the stages running here; nil for
	// a Harness manager.
	DroneStages *drone.Backend
}

// provideBackend makes the configured manager client; its cleanup closes the connections it
// keeps alive and stops what it watches, so a stopped runner leaves nothing open behind it.
func provideBackend(cfg *config.Config, opts harness.Options, logger *slog.Logger) (backend, func(), error) {
	if !cfg.IsDrone() {
		c, err := harness.New(opts)
		if err != nil {
			return backend{}, nil, err
		}
		return backend{Manager: c}, c.CloseIdleConnections, nil
	}
	c, err := drone.New(drone.Options{Endpoint: cfg.DroneEndpoint(), Secret: cfg.Drone.Secret,
		InsecureSkipVerify: cfg.Drone.SkipVerify, Logger: logger})
	if err != nil {
		return backend{}, nil, errs.Wrap(errs.CodeInvalidConfig, "Drone client", err)
	}
	b, err := drone.NewBackend(drone.BackendOptions{
		Client:   c,
		Filter:   droneFilter(cfg),
		Machine:  cfg.DroneMachine(),
		StateDir: filepath.Join(cfg.StateDir, droneStateDir),
		Logger:   logger,
	})
	if err != nil {
		c.CloseIdleConnections()
		return backend{}, nil, errs.Wrap(errs.CodeInvalidConfig, "Drone backend", err)
	}
	logger.Info("taking stages from a Drone server", "server", cfg.DroneEndpoint(), "machine", cfg.DroneMachine(),
		"type", cfg.Drone.Type, "capacity", cfg.ParallelWorkers)
	return backend{
		Manager: b,
		Aborts:  b.Aborts(),
		NewOfferBackoff: func() poller.OfferBackoff {
			return drone.NewBackoff(retry.Policy{}, retry.Policy{})
		},
		CallTimeout:         droneCallTimeout,
		UnauthorizedBackoff: drone.UnauthorizedPolicy,
		Drone:               c,
		DroneStages:         b,
	}, func() { b.Close(); c.CloseIdleConnections() }, nil
}

// droneFilter is what the runner asks a Drone server for: pipelines of its type on its platform.
func droneFilter(cfg *config.Config) drone.Filter {
	d := cfg.Drone
	f := drone.Filter{Kind: "pipeline", Type: d.Type, Os: d.OS, Arch: d.Arch, Kernel: d.Kernel, Variant: d.Variant}
	if f.Os == "" {
		f.Os = goruntime.GOOS
	}
	if f.Arch == "" {
		f.Arch = goruntime.GOARCH
	}
	if len(d.Labels) > 0 {
		f.Labels = d.Labels
	}
	return f
}
