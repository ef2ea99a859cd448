package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/telemetry"
)

//go:embed assets
var assets embed.FS

// Status is what the endpoint reports on.
type Status interface {
	// Ready reports whether the runner is ready and, when it is not, why.
	Ready() (ok bool, reason string)
	// Snapshot is the runner's state now, for the status page.
	Snapshot() telemetry.Snapshot
}

// Stages lists the CI stages a runner holds; the stage engine implements it.
type Stages interface {
	Stages(ctx context.Context) ([]*engine.Stage, error)
}

// Options configure a Server.
type Options struct {
	// Addr is the listen address, host:port. A host that is not loopback (or an empty host,
	// meaning every interface) requires Username and Password.
	Addr string
	// Username and Password, when set, are required (HTTP basic auth) for everything but the
	// probes /healthz and /readyz. Give both or neither.
	Username string
	Password string
	Status   Status
	// Stages, when set, adds the CI stages in progress to the status page.
	Stages Stages
	// Metrics is what /metrics serves.
	Metrics prometheus.Gatherer
	Logger  *slog.Logger
}

// Server is a runner's HTTP endpoint. Build it with New, bind it with Listen, then Serve until
// Shutdown.
type Server struct {
	opts    Options
	handler http.Handler
	srv     *http.Server
	logger  *slog.Logger

	mu sync.Mutex
	ln net.Listener
}

// Header values of every response of the status page and its files: no third-party content, no
// framing, nothing cached (the page is live and may sit behind credentials).
const (
	contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	realm = "dlite"
)

// New checks opts and builds the endpoint's handler. It does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Status == nil || opts.Metrics == nil {
		return nil, errors.New("httpapi: Options.Status and Options.Metrics are required")
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, errors.New("httpapi: give both a user name and a password, or neither")
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("httpapi: listen address %q: %w", opts.Addr, err)
	}
	// The configuration refuses this already; the check is repeated here so that no other way of
	// building a server can expose the status page and metrics without credentials.
	if opts.Username == "" && !IsLoopback(host) {
		return nil, fmt.Errorf("httpapi: %q is reachable from other hosts: credentials are required", opts.Addr)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, logger: opts.Logger}
	s.handler = s.routes()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// IsLoopback reports whether a listen host is reachable from this machine only. An empty host
// listens on every interface, and a host name other than localhost may resolve anywhere, so
// neither counts.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handler returns the endpoint's routes, for tests and for embedding in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the listen address. Binding apart from serving lets a runner fail at start when
// the address is taken, and lets the caller learn the port picked for ":0".
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s for the status endpoint: %w", s.opts.Addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves on the bound listener until Shutdown or Close, then returns nil.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		return errors.New("httpapi: Serve before Listen")
	}
	s.logger.Info("status endpoint listening", "addr", ln.Addr().String(),
		"auth", s.opts.Username != "", "paths", "/ /status.json /metrics /healthz /readyz")
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops serving, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close stops serving at once and releases the listener, whether or not Serve ran.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	return err
}

func (s *Server) routes() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.logger.Error("status endpoint handler panicked", "path", c.Path(), "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-store")
			return next(c)
		}
	})

	// Probes stay open: the kubelet and load balancers do not send credentials, and they learn
	// nothing but "alive" and a reason for not being ready.
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	var private []echo.MiddlewareFunc
	if s.opts.Username != "" {
		private = append(private, middleware.BasicAuthWithConfig(middleware.BasicAuthConfig{
			Realm:     realm,
			Validator: credentials(s.opts.Username, s.opts.Password),
		}))
	}
	metrics := promhttp.HandlerFor(s.opts.Metrics, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	e.GET("/metrics", echo.WrapHandler(metrics), private...)
	e.GET("/status.json", s.status, private...)
	e.GET("/", s.asset("index.html", echo.MIMETextHTMLCharsetUTF8), private...)
	e.GET("/app.js", s.asset("app.js", echo.MIMEApplicationJavaScriptCharsetUTF8), private...)
	e.GET("/style.css", s.asset("style.css", "text/css; charset=utf-8"), private...)
	return e
}

func (s *Server) healthz(c echo.Context) error {
	return c.String(http.StatusOK, "ok\n")
}

func (s *Server) readyz(c echo.Context) error {
	if ok, reason := s.opts.Status.Ready(); !ok {
		return c.String(http.StatusServiceUnavailable, "not ready: "+reason+"\n")
	}
	return c.String(http.StatusOK, "ready\n")
}

// statusBody is status.json: the runner's snapshot and the CI stages it holds.
type statusBody struct {
	telemetry.Snapshot
	// Stages are the CI stages set up and not yet cleaned up, oldest first.
	Stages []StageView `json:"stages"`
	// StagesError says why the stages could not be listed; empty when they were.
	StagesError string `json:"stagesError,omitempty"`
}

// StageView is a CI stage as the status page shows it.
type StageView struct {
	ID      string     `json:"id"`
	State   string     `json:"state"`
	Created time.Time  `json:"created"`
	Steps   []StepView `json:"steps"`
}

// StepView is a step of a stage as the status page shows it.
type StepView struct {
	ID       string    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Backend  string    `json:"backend"`
	Detached bool      `json:"detached,omitempty"`
	Started  time.Time `json:"started"`
	// Status is "running" until the step ends, then how it ended.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) status(c echo.Context) error {
	body := statusBody{Snapshot: s.opts.Status.Snapshot(), Stages: []StageView{}}
	if s.opts.Stages != nil {
		stages, err := s.opts.Stages.Stages(c.Request().Context())
		if err != nil {
			body.StagesError = err.Error()
		}
		body.Stages = stageViews(stages)
	}
	return c.JSON(http.StatusOK, body)
}

// stageViews orders the stages and their steps by start, so the page does not jump around.
func stageViews(stages []*engine.Stage) []StageView {
	out := make([]StageView, 0, len(stages))
	for _, st := range stages {
		v := StageView{ID: st.Spec.ID, State: string(st.State), Created: st.Created, Steps: []StepView{}}
		for _, step := range st.Steps {
			sv := StepView{ID: step.ID, Name: step.Name, Backend: step.Backend, Detached: step.Detached,
				Started: step.Started, Status: string(engine.StepRunning)}
			if step.Result != nil {
				sv.Status, sv.Error = string(step.Result.Status), step.Result.Error
			}
			v.Steps = append(v.Steps, sv)
		}
		slices.SortFunc(v.Steps, func(a, b StepView) int { return cmp.Or(a.Started.Compare(b.Started), strings.Compare(a.ID, b.ID)) })
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b StageView) int { return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID)) })
	return out
}

// asset serves one embedded file of the status page.
func (s *Server) asset(name, contentType string) echo.HandlerFunc {
	body, err := assets.ReadFile("assets/" + name)
	if err != nil {
		// The files are embedded at build time; a missing one is a build mistake.
		panic(fmt.Sprintf("httpapi: embedded asset %s: %v", name, err))
	}
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		return c.Blob(http.StatusOK, contentType, body)
	}
}

// credentials checks basic-auth credentials in constant time: both sides are hashed first, so
// neither the comparison's time nor an early exit tells how much of a guess was right, or how long
// the real values are.
func credentials(user, password string) middleware.BasicAuthValidator {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return func(u, p string, _ echo.Context) (bool, error) {
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passwordOK := subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		return userOK&passwordOK == 1, nil
	}
}
