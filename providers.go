package dlite

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/google/wire"

	"github.com/dlite-dev/dlite/internal/admission"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
	"github.com/dlite-dev/dlite/internal/spool"
)

// handlers is what a runner is built to run: the generated task servers and legacy handlers.
type handlers struct {
	Servers []dispatch.TaskServer
	Legacy  map[string]http.Handler
}

// runtime is an assembled runner with the parts the HTTP endpoint reports on.
type runtime struct {
	Runner    *runner.Runner
	Session   *session.Session
	Executor  *executor.Executor
	Pool      *pool.Pool
	Reporter  *reporter.Reporter
	Spool     *spool.Spool
	Admission *admission.Controller
	Identity  runner.Identity
}

// runtimeSet assembles a runner from the configuration: the composition root of the runtime.
var runtimeSet = wire.NewSet(
	provideManagerOptions,
	harness.ProviderSet,
	provideDispatcher,
	providePool,
	provideSpool,
	provideReporter,
	provideExecutor,
	provideIdentity,
	provideSession,
	provideAdmission,
	providePoller,
	provideRunner,
	wire.Struct(new(runtime), "*"),
)

func provideManagerOptions(cfg *config.Config, logger *slog.Logger) harness.Options {
	return harness.Options{
		Endpoint:           cfg.Endpoint(),
		AccountID:          cfg.AccountID,
		AccountSecret:      cfg.AccountSecret,
		Token:              cfg.Token,
		CACertDir:          cfg.TLS.CACertDir,
		ClientCertFile:     cfg.TLS.ClientCertFile,
		ClientKeyFile:      cfg.TLS.ClientKeyFile,
		InsecureSkipVerify: cfg.TLS.InsecureSkipVerify,
		Logger:             logger,
	}
}

func provideDispatcher(cfg *config.Config, h handlers, logger *slog.Logger) (*dispatch.Dispatcher, error) {
	return dispatch.New(dispatch.Options{
		Servers:      h.Servers,
		Legacy:       h.Legacy,
		MaxDataBytes: cfg.MaxTaskDataBytes,
		Logger:       logger,
	})
}

func providePool(cfg *config.Config) *pool.Pool { return pool.New(cfg.ParallelWorkers) }

func provideSpool(cfg *config.Config, logger *slog.Logger) (*spool.Spool, func(), error) {
	sp, err := spool.Open(cfg.SpoolDir, logger)
	if err != nil {
		return nil, nil, err
	}
	return sp, func() { _ = sp.Close() }, nil
}

func provideReporter(cfg *config.Config, mgr manager.Manager, sp *spool.Spool, logger *slog.Logger) *reporter.Reporter {
	return reporter.New(reporter.Options{Sender: mgr, Spool: sp, TTL: cfg.ResultTTL, Logger: logger})
}

func provideExecutor(d *dispatch.Dispatcher, p *pool.Pool, r *reporter.Reporter, logger *slog.Logger) *executor.Executor {
	return executor.New(executor.Options{Dispatcher: d, Slots: p, Reporter: r, Logger: logger})
}

func provideIdentity(cfg *config.Config, d *dispatch.Dispatcher) runner.Identity {
	return runner.NewIdentity(cfg.Name, cfg.Endpoint(), cfg.Tags, d.Types(), cfg.ParallelWorkers)
}

func provideSession(cfg *config.Config, mgr manager.Manager, id runner.Identity, x *executor.Executor, logger *slog.Logger) *session.Session {
	return session.New(session.Options{
		Manager:  mgr,
		Describe: func() manager.Delegate { return id.Delegate(x.RunningIDs(), time.Now()) },
		Interval: cfg.HeartbeatInterval,
		Logger:   logger,
	})
}

func provideAdmission(cfg *config.Config, logger *slog.Logger) *admission.Controller {
	return admission.New(admission.Options{
		MaxCPUPercent:    cfg.MaxCPUPercent,
		MaxMemoryPercent: cfg.MaxMemoryPercent,
		Logger:           logger,
	})
}

func providePoller(cfg *config.Config, mgr manager.Manager, p *pool.Pool, x *executor.Executor, s *session.Session,
	a *admission.Controller, d *dispatch.Dispatcher, logger *slog.Logger) *poller.Poller {
	return poller.New(poller.Options{
		Source:   mgr,
		Slots:    p,
		Tasks:    x,
		Session:  s,
		Admitter: a,
		Supports: d.Supports,
		Interval: cfg.PollInterval,
		Logger:   logger,
	})
}

func provideRunner(s *session.Session, p *poller.Poller, x *executor.Executor, r *reporter.Reporter,
	a *admission.Controller, logger *slog.Logger) *runner.Runner {
	return runner.New(runner.Options{Session: s, Poller: p, Executor: x, Reporter: r, Admission: a, Logger: logger})
}
