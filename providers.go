package dlite

import (
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/google/wire"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/admission"
	"github.com/dlite-dev/dlite/internal/config"
	"github.com/dlite-dev/dlite/internal/contact"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/httpapi"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/poller"
	"github.com/dlite-dev/dlite/internal/pool"
	"github.com/dlite-dev/dlite/internal/reporter"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/internal/telemetry"
)

// handlers is what a runner is built to run: the generated task servers and legacy handlers, and
// whether it runs the CI stage task types on a stage engine.
type handlers struct {
	Servers []dispatch.TaskServer
	Legacy  map[string]http.Handler
	CI      bool
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
	Telemetry *telemetry.Recorder
	Monitor   *telemetry.Monitor
	// Engine runs the CI stages; nil when the runner runs none.
	Engine stageEngine
	// HTTP is the status endpoint, bound but not serving yet; nil when DLITE_HTTP_ADDR is empty.
	HTTP *httpapi.Server
}

// runtimeSet assembles a runner from the configuration: the composition root of the runtime.
var runtimeSet = wire.NewSet(
	provideManagerOptions,
	provideBackend,
	contact.ProviderSet,
	provideManager,
	provideDispatcher,
	provideRecorderOptions,
	provideMonitorOptions,
	telemetry.ProviderSet,
	providePool,
	provideSpool,
	provideReporter,
	provideExecutor,
	provideIdentity,
	provideSession,
	provideAdmission,
	providePoller,
	provideRunner,
	provideHTTP,
	ciSet,
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

// provideManager is the manager as the runtime talks to it: the client, with every call timed,
// raising sig whenever the manager answers.
func provideManager(b backend, rec *telemetry.Recorder, sig *contact.Signal) manager.Manager {
	return contact.Watch(rec.InstrumentManager(b.Manager), sig)
}

func provideRecorderOptions(d *dispatch.Dispatcher) telemetry.RecorderOptions {
	return telemetry.RecorderOptions{TaskTypes: d.Types()}
}

func provideMonitorOptions(cfg *config.Config, rec *telemetry.Recorder, r *runner.Runner, s *session.Session, p *pool.Pool,
	sp *spool.Spool, rep *reporter.Reporter, a *admission.Controller, id runner.Identity) telemetry.MonitorOptions {
	return telemetry.MonitorOptions{
		Recorder: rec,
		Sources: telemetry.Sources{
			Phase:          r.Phase,
			Session:        s.State,
			Slots:          func() (int, int) { return p.InUse(), p.Size() },
			SpoolDepth:     sp.Len,
			PendingResults: rep.Pending,
			Usage:          a.Usage,
		},
		Name:              id.Name,
		TaskTypes:         id.TaskTypes,
		HeartbeatInterval: cfg.HeartbeatInterval,
	}
}

// provideHTTP binds the status endpoint when DLITE_HTTP_ADDR is set; Runner.Run serves it. Binding
// here makes a taken address fail New, before the runner registers.
func provideHTTP(cfg *config.Config, mon *telemetry.Monitor, e stageEngine, logger *slog.Logger) (*httpapi.Server, func(), error) {
	if cfg.HTTPAddr == "" {
		return nil, func() {}, nil
	}
	opts := httpapi.Options{
		Addr:     cfg.HTTPAddr,
		Username: cfg.HTTPUsername,
		Password: cfg.HTTPPassword,
		Status:   mon,
		Metrics:  mon.Gatherer(),
		Logger:   logger,
	}
	if e.Engine != nil {
		opts.Stages = e.Engine
	}
	srv, err := httpapi.New(opts)
	if err != nil {
		return nil, nil, errs.Wrap(errs.CodeInvalidConfig, "dlite.New", err)
	}
	if err := srv.Listen(); err != nil {
		return nil, nil, errs.Newf(errs.CodeInvalidConfig, "dlite.New",
			"%v: give each runner on a host its own DLITE_HTTP_ADDR, or set it to off", err)
	}
	return srv, func() { _ = srv.Close() }, nil
}

func provideDispatcher(cfg *config.Config, h handlers, ci ciTasks, dt droneTasks, logger *slog.Logger) (*dispatch.Dispatcher, error) {
	servers := h.Servers
	if ci.Register != nil {
		servers = append(slices.Clip(servers), dispatch.TaskServer(ci))
	}
	if dt.Register != nil {
		servers = append(slices.Clip(servers), dispatch.TaskServer(dt))
	}
	opts := dispatch.Options{
		Servers:      servers,
		Legacy:       h.Legacy,
		MaxDataBytes: cfg.MaxTaskDataBytes,
		Logger:       logger,
	}
	if dt.Register != nil {
		// A cancelled Drone stage answers once its steps are stopped, which takes up to the
		// engine's kill grace for a container that ignores SIGTERM; its answer is the stage's
		// final state, worth the wait.
		opts.AbandonAfter = engine.DefaultKillGrace + droneStopMargin
	}
	return dispatch.New(opts)
}

func providePool(cfg *config.Config) *pool.Pool { return pool.New(cfg.ParallelWorkers) }

func provideSpool(cfg *config.Config, logger *slog.Logger) (*spool.Spool, func(), error) {
	sp, err := spool.Open(cfg.SpoolDir, logger)
	if err != nil {
		return nil, nil, err
	}
	return sp, func() { _ = sp.Close() }, nil
}

// provideReporter makes the reporter; results that wait after failed deliveries are tried again
// as soon as the manager answers any call.
func provideReporter(cfg *config.Config, mgr manager.Manager, sp *spool.Spool, rec *telemetry.Recorder, sig *contact.Signal,
	logger *slog.Logger) *reporter.Reporter {
	r := reporter.New(reporter.Options{Sender: mgr, Spool: sp, TTL: cfg.ResultTTL, SyncDelay: cfg.SpoolSyncDelay,
		Logger: logger, OnDone: rec.ResultDone})
	sig.Listen(r.ManagerAnswered)
	return r
}

func provideExecutor(d *dispatch.Dispatcher, p *pool.Pool, r *reporter.Reporter, rec *telemetry.Recorder, logger *slog.Logger) *executor.Executor {
	return executor.New(executor.Options{Dispatcher: d, Slots: p, Reporter: r, Observer: rec, Logger: logger})
}

func provideIdentity(cfg *config.Config, d *dispatch.Dispatcher) runner.Identity {
	endpoint := cfg.Endpoint()
	if cfg.IsDrone() {
		endpoint = cfg.DroneEndpoint()
	}
	return runner.NewIdentity(cfg.Name, endpoint, cfg.Tags, d.Types(), cfg.ParallelWorkers)
}

func provideSession(cfg *config.Config, b backend, mgr manager.Manager, id runner.Identity, x *executor.Executor, logger *slog.Logger) *session.Session {
	return session.New(session.Options{
		Manager:             mgr,
		UnauthorizedBackoff: b.UnauthorizedBackoff,
		Describe:            func() manager.Delegate { return id.Describe(x.RunningIDs(), time.Now()) },
		Interval:            cfg.HeartbeatInterval,
		Logger:              logger,
	})
}

func provideAdmission(cfg *config.Config, logger *slog.Logger) *admission.Controller {
	return admission.New(admission.Options{
		MaxCPUPercent:    cfg.MaxCPUPercent,
		MaxMemoryPercent: cfg.MaxMemoryPercent,
		Logger:           logger,
	})
}

// providePoller makes the poller; a poller backing off after failed polls polls again as soon as
// the manager answers any call.
func providePoller(cfg *config.Config, b backend, mgr manager.Manager, p *pool.Pool, x *executor.Executor, s *session.Session,
	a *admission.Controller, d *dispatch.Dispatcher, rec *telemetry.Recorder, sig *contact.Signal, logger *slog.Logger) *poller.Poller {
	pl := poller.New(poller.Options{
		Source:   mgr,
		Slots:    p,
		Tasks:    x,
		Session:  s,
		Admitter: rec.InstrumentAdmitter(a),
		Observer: rec,
		Supports: d.Supports,
		Interval: cfg.PollInterval,
		// A Drone server's polls offer one stage each, its aborts come by watches, and its
		// refused secret is retried slowly: the backend says so, and the poller needs no more.
		CallTimeout:     b.CallTimeout,
		NewOfferBackoff: b.NewOfferBackoff,
		Aborts:          b.Aborts,
		Logger:          logger,
	})
	sig.Listen(pl.ManagerAnswered)
	return pl
}

// provideRunner makes the runner; it answers the tasks an earlier run left unfinished when the
// backend keeps them (a Drone server).
func provideRunner(b backend, s *session.Session, p *poller.Poller, x *executor.Executor, r *reporter.Reporter,
	a *admission.Controller, logger *slog.Logger) *runner.Runner {
	return runner.New(runner.Options{Session: s, Poller: p, Executor: x, Reporter: r, Admission: a, Recover: b.Recover,
		Logger: logger})
}
