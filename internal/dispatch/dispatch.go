package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/httprec"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// pathPrefix starts the path of every task operation; the rest of the path is the task type.
const pathPrefix = "/tasks/"

// DefaultAbandonAfter is how long a cancelled handler may take to return before its task is
// reported anyway.
const DefaultAbandonAfter = 5 * time.Second

// TaskServer is a task spec and the generated server that implements it.
type TaskServer struct {
	// Spec returns the task spec; pass the generated package's GetSpec.
	Spec func() (*openapi3.T, error)
	// Register registers the generated handlers on e, typically
	// `func(e *echo.Echo) { gen.RegisterHandlers(e, gen.NewStrictHandler(impl, nil)) }`.
	Register func(e *echo.Echo)
}

// Options configure a Dispatcher.
type Options struct {
	// Servers are the generated task servers. Two servers may not declare the same task type.
	Servers []TaskServer
	// Legacy maps task types to plain http.Handlers that take the whole task envelope as their
	// request body, the way the old dlite library called them.
	Legacy map[string]http.Handler
	// MaxDataBytes bounds a task's data; larger tasks fail without running. 0 means no limit.
	MaxDataBytes int64
	// AbandonAfter is how long a handler may ignore its cancelled context before the task is
	// reported without it. Default DefaultAbandonAfter.
	AbandonAfter time.Duration
	Logger       *slog.Logger
}

// Outcome is how a task ended.
type Outcome struct {
	Code manager.Code
	// Err says why the task did not succeed; nil when Code is OK. It is an *errs.Error.
	Err error
	// Data is the handler's output as JSON, or nil when it produced none.
	Data json.RawMessage
	// Settled, set by Dispatch, is closed once the handler has returned. It is still open when the
	// task was reported without waiting for a handler that ignored its cancelled context.
	Settled <-chan struct{}
}

// Dispatcher serves tasks to their handlers. It is safe for concurrent use.
type Dispatcher struct {
	echo       *echo.Echo
	routes     map[string]*routers.Route
	legacy     map[string]http.Handler
	types      []string
	maxData    int64
	logger     *slog.Logger
	validation *openapi3filter.Options
	watchdog   watchdog
}

// New builds a Dispatcher from the task servers' specs. It fails when a spec cannot be loaded,
// has an operation that is not `POST /tasks/<TASK_TYPE>`, or declares a type twice.
func New(opts Options) (*Dispatcher, error) {
	d := &Dispatcher{
		echo:    echo.New(),
		routes:  make(map[string]*routers.Route),
		legacy:  make(map[string]http.Handler),
		maxData: opts.MaxDataBytes,
		logger:  opts.Logger,
	}
	d.watchdog.after = opts.AbandonAfter
	if d.watchdog.after <= 0 {
		d.watchdog.after = DefaultAbandonAfter
	}
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	d.echo.HideBanner = true
	d.echo.HidePort = true
	d.echo.HTTPErrorHandler = writeError
	d.echo.Binder = offStackBinder{}
	d.validation = &openapi3filter.Options{
		MultiError:              true,
		AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
	}

	for i, srv := range opts.Servers {
		if srv.Spec == nil || srv.Register == nil {
			return nil, errs.Newf(errs.CodeInvalidConfig, "task server", "server %d needs both Spec and Register", i)
		}
		spec, err := srv.Spec()
		if err != nil {
			return nil, errs.Wrap(errs.CodeInvalidConfig, "load task spec", err)
		}
		if err := d.addSpec(spec); err != nil {
			return nil, err
		}
		srv.Register(d.echo)
	}
	for typ, h := range opts.Legacy {
		if typ == "" || h == nil {
			return nil, errs.New(errs.CodeInvalidConfig, "legacy handler", "needs a task type and a handler")
		}
		if _, dup := d.routes[typ]; dup {
			return nil, errs.Newf(errs.CodeInvalidConfig, "legacy handler", "task type %s is also in a task spec", typ)
		}
		d.legacy[typ] = h
	}
	for typ := range d.routes {
		d.types = append(d.types, typ)
	}
	for typ := range d.legacy {
		d.types = append(d.types, typ)
	}
	slices.Sort(d.types)
	return d, nil
}

func (d *Dispatcher) addSpec(spec *openapi3.T) error {
	// The in-process requests carry no Host; server URLs in the spec must not matter.
	spec.Servers = nil
	for path, item := range spec.Paths.Map() {
		typ, ok := strings.CutPrefix(path, pathPrefix)
		if !ok || typ == "" || strings.ContainsAny(typ, "/{}") || len(item.Operations()) != 1 || item.Post == nil {
			return errs.Newf(errs.CodeInvalidConfig, "load task spec",
				"path %s: every task operation must be POST %s<TASK_TYPE>", path, pathPrefix)
		}
		if _, dup := d.routes[typ]; dup {
			return errs.Newf(errs.CodeInvalidConfig, "load task spec", "task type %s is declared twice", typ)
		}
		d.routes[typ] = &routers.Route{Spec: spec, Path: path, PathItem: item, Method: http.MethodPost, Operation: item.Post}
	}
	return nil
}

// Types returns the supported task types, sorted.
func (d *Dispatcher) Types() []string { return slices.Clone(d.types) }

// Supports reports whether a handler is registered for the task type.
func (d *Dispatcher) Supports(taskType string) bool {
	if _, ok := d.routes[taskType]; ok {
		return true
	}
	_, ok := d.legacy[taskType]
	return ok
}

// Run runs the task in the calling goroutine and calls report exactly once with its outcome. ctx
// is the task's context: cancel it with errs.ErrAborted or errs.ErrShuttingDown as the cause to
// stop the task; Run adds the deadline from the task's timeout, and the envelope and logger
// (the dispatcher's own when nil; tasks.Logger annotates it with the task) that handlers read
// from their context. A handler that panics fails its task.
//
// Run returns when the handler has returned. A handler that ignores its cancelled context for
// AbandonAfter is reported without it, by the dispatcher's watchdog, while it goes on in the
// calling goroutine: the task is answered in time, and the caller's slot stays taken until the
// handler really returns, so a runner never runs more handlers than it has slots. One goroutine
// per task, even while thousands wait.
func (d *Dispatcher) Run(ctx context.Context, task *manager.Task, logger *slog.Logger, report func(Outcome)) {
	if logger == nil {
		logger = d.logger
	}
	if task.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, task.Timeout, errs.ErrTimeout)
		defer cancel()
	}
	if _, legacy := d.legacy[task.Type]; !legacy {
		// Spec handlers take the data alone: the rest of the manager's answer need not stay in
		// memory while the task runs.
		task.Raw = nil
	}
	ctx = tasks.WithTask(ctx, &task.Envelope, logger)
	if d.maxData > 0 && int64(len(task.Data)) > d.maxData {
		report(failed(errs.Newf(errs.CodeTaskTooLarge, "", "task data is %d bytes, more than the limit of %d bytes", len(task.Data), d.maxData), nil))
		return
	}

	r := &running{ctx: ctx, task: task, logger: logger, report: report}
	d.watchdog.add(r)
	defer d.watchdog.remove(r)
	outcome, reached := d.serve(ctx, task, logger)
	if reached && outcome.Code != manager.CodeOK && ctx.Err() != nil {
		outcome = interrupted(ctx, outcome)
	}
	r.settle(outcome)
}

// running is a task whose handler has not returned yet.
type running struct {
	ctx      context.Context
	task     *manager.Task
	logger   *slog.Logger
	report   func(Outcome)
	reported atomic.Bool
	// cancelled is when the watchdog first saw ctx done; guarded by the watchdog's mutex.
	cancelled time.Time
}

// settle reports the outcome unless the task was reported already.
func (r *running) settle(o Outcome) {
	if r.reported.CompareAndSwap(false, true) {
		r.report(o)
	}
}

// abandon reports a task whose handler ignored its cancelled context for waited.
func (r *running) abandon(waited time.Duration) {
	if r.reported.Load() {
		return
	}
	r.logger.Warn("task handler ignored its cancelled context; reporting the task without it",
		"task_id", r.task.ID, "task_type", r.task.Type, "waited", waited, "cause", context.Cause(r.ctx))
	r.settle(interrupted(r.ctx, Outcome{Code: manager.CodeFailed}))
}

// watchdog abandons the handlers that ignore their cancelled context. A timer looks over every
// running task a few times per AbandonAfter, and only while tasks run: a task costs an entry in a
// map rather than a context watcher and a timer of its own, and no goroutine waits in between.
type watchdog struct {
	after time.Duration
	mu    sync.Mutex
	tasks map[*running]struct{}
	// timer fires the next look; armed is set while it is due to.
	timer *time.Timer
	armed bool
}

func (w *watchdog) add(r *running) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tasks == nil {
		w.tasks = make(map[*running]struct{})
	}
	w.tasks[r] = struct{}{}
	if w.armed {
		return
	}
	w.armed = true
	if w.timer == nil {
		w.timer = time.AfterFunc(w.every(), w.look)
	} else {
		w.timer.Reset(w.every())
	}
}

func (w *watchdog) remove(r *running) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.tasks, r)
}

// every is the time between looks: a tenth of AbandonAfter, so a handler is abandoned between
// AbandonAfter and 1.1 times it after its context ended.
func (w *watchdog) every() time.Duration { return max(w.after/10, time.Millisecond) }

// look abandons the tasks whose context ended AbandonAfter ago or more, and arms the next look
// unless no task runs. A runner that goes from one task straight to the next arms it once.
func (w *watchdog) look() {
	now := time.Now()
	var due []*running
	w.mu.Lock()
	for r := range w.tasks {
		switch {
		case r.ctx.Err() == nil:
		case r.cancelled.IsZero():
			r.cancelled = now
		case now.Sub(r.cancelled) >= w.after:
			due = append(due, r)
			delete(w.tasks, r)
		}
	}
	w.armed = len(w.tasks) > 0
	if w.armed {
		w.timer.Reset(w.every())
	}
	w.mu.Unlock()
	for _, r := range due {
		r.abandon(now.Sub(r.cancelled))
	}
}

// serve builds the task's request, validates it and serves it to the handler. reached is false
// when the task never got to its handler: why it could not is then the outcome, cancelled or not.
func (d *Dispatcher) serve(ctx context.Context, task *manager.Task, logger *slog.Logger) (outcome Outcome, reached bool) {
	defer func() {
		if v := recover(); v != nil {
			stack := debug.Stack()
			if p, ok := v.(*offStackPanic); ok {
				v, stack = p.value, p.stack
			}
			logger.Error("task handler panicked", "task_id", task.ID, "task_type", task.Type, "panic", v, "stack", string(stack))
			outcome, reached = failed(errs.Newf(errs.CodePanic, "", "task handler panicked: %v", v), nil), true
		}
	}()
	var req *http.Request
	var serve http.Handler
	var err error
	if h, ok := d.legacy[task.Type]; ok {
		req, err = legacyRequest(ctx, task)
		serve = h
	} else {
		OffStack(func() { req, err = d.taskRequest(ctx, task) })
		serve = d.echo
	}
	if err != nil {
		return failed(err, nil), false
	}
	rec := httprec.New()
	serve.ServeHTTP(rec, req)
	return answered(rec, task.Type, serve == d.echo), true
}

// Dispatch runs the task like Run, in a goroutine of its own, and returns its outcome as soon as
// it is reported; the outcome's Settled is closed when the handler has returned.
func (d *Dispatcher) Dispatch(ctx context.Context, task *manager.Task, logger *slog.Logger) Outcome {
	settled := make(chan struct{})
	reported := make(chan Outcome, 1)
	go func() {
		defer close(settled)
		d.Run(ctx, task, logger, func(o Outcome) { reported <- o })
	}()
	o := <-reported
	o.Settled = settled
	return o
}

// interrupted rewrites a failed outcome whose context ended: the cause of the cancellation, not
// the handler's reaction to it, is what the manager must hear.
func interrupted(ctx context.Context, o Outcome) Outcome {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errs.ErrTimeout):
		o.Code = manager.CodeTimeout
		env, _ := tasks.FromContext(ctx)
		o.Err = errs.Newf(errs.CodeTimeout, "", "task timed out after %s", env.Timeout)
	case errors.Is(cause, errs.ErrAborted), errors.Is(cause, errs.ErrShuttingDown):
		o.Code = manager.CodeFailed
		o.Err = cause
	default:
		o.Code = manager.CodeFailed
		o.Err = errs.Wrap(errs.CodeShuttingDown, "", cause)
	}
	return o
}

func failed(err error, data json.RawMessage) Outcome {
	return Outcome{Code: manager.CodeFailed, Err: err, Data: data}
}

// taskRequest builds the in-process request for a spec task and validates it, filling in defaults.
func (d *Dispatcher) taskRequest(ctx context.Context, task *manager.Task) (*http.Request, error) {
	route, ok := d.routes[task.Type]
	if !ok {
		return nil, errs.Newf(errs.CodeUnsupportedTaskType, "", "no handler for task type %s", task.Type)
	}
	body := []byte(task.Data)
	if len(bytes.TrimSpace(body)) == 0 || string(bytes.TrimSpace(body)) == "null" {
		// A task without data is a task with empty data: the schema says what is missing.
		body = []byte("{}")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, route.Path, bytes.NewReader(body))
	if err != nil {
		return nil, errs.Wrap(errs.CodeInvalidTaskData, "", err)
	}
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	in := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: d.validation}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		return nil, errs.Newf(errs.CodeInvalidTaskData, "", "invalid %s data: %s", task.Type, describe(err))
	}
	return req, nil
}

// legacyRequest builds the request the old dlite library sent to an http.Handler: a POST whose
// body is the whole task as the manager sent it.
func legacyRequest(ctx context.Context, task *manager.Task) (*http.Request, error) {
	body := []byte(task.Raw)
	if len(body) == 0 {
		var err error
		if body, err = json.Marshal(legacyEnvelope(task)); err != nil {
			return nil, errs.Wrap(errs.CodeInvalidTaskData, "encode task envelope", err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", bytes.NewReader(body))
	if err != nil {
		return nil, errs.Wrap(errs.CodeInvalidTaskData, "", err)
	}
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	return req, nil
}

// legacyEnvelope is the manager's task shape, for tasks that did not come with their raw JSON.
func legacyEnvelope(task *manager.Task) map[string]any {
	env := map[string]any{
		"id":             task.ID,
		"type":           task.Type,
		"async":          task.Async,
		"runnerResponse": task.RunnerResponse,
		"timeout":        int64(task.Timeout / time.Second),
		"logging":        map[string]any{"token": task.Logging.Token, "abstractions": task.Logging.Abstractions},
		"delegate":       map[string]any{"id": task.Delegate.ID, "instance_id": task.Delegate.InstanceID, "token": task.Delegate.Token},
	}
	if len(task.Data) > 0 {
		env["data"] = task.Data
	}
	if len(task.Capabilities) > 0 {
		env["capabilities"] = task.Capabilities
	}
	return env
}

// describe turns a validation error into one line that names each bad field, without echoing the
// values (task data may hold secrets).
func describe(err error) string {
	var reqErr *openapi3filter.RequestError
	if errors.As(err, &reqErr) && reqErr.Err != nil {
		err = reqErr.Err
	}
	var parts []string
	var visit func(error)
	visit = func(e error) {
		var multi openapi3.MultiError
		var schemaErr *openapi3.SchemaError
		switch {
		case errors.As(e, &multi):
			for _, m := range multi {
				visit(m)
			}
		case errors.As(e, &schemaErr):
			reason := schemaErr.Reason
			if reason == "" {
				reason = fmt.Sprintf("does not match %q", schemaErr.SchemaField)
			}
			ptr := schemaErr.JSONPointer()
			if len(ptr) > 0 && schemaErr.SchemaField == "required" {
				// The pointer of a missing property names the property, which the reason already does.
				ptr = ptr[:len(ptr)-1]
			}
			if len(ptr) > 0 {
				reason = "/" + strings.Join(ptr, "/") + ": " + reason
			}
			parts = append(parts, reason)
		default:
			parts = append(parts, e.Error())
		}
	}
	visit(err)
	return strings.Join(slices.Compact(parts), "; ")
}

// errorCodeHeader carries an error code from writeError to the recorder, in-process only.
const errorCodeHeader = "X-Dlite-Error-Code"

// writeError answers a handler's Go error: echo's errors keep their status, anything else is a 500.
// Either way the body carries the message, which becomes the task's reported error. Data that the
// schema accepts but the generated types cannot hold (1e3 for an int64) fails to bind: that is
// invalid task data, said without echoing the value.
func writeError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		c.Response().Header().Set(errorCodeHeader, string(errs.CodeInvalidTaskData))
		field := typeErr.Field
		if field == "" {
			field = "(root)"
		}
		_ = c.JSON(http.StatusBadRequest, map[string]string{
			"message": fmt.Sprintf("/%s: must be a value the handler can take as %s", strings.ReplaceAll(field, ".", "/"), typeErr.Type)})
		return
	}
	status, msg := http.StatusInternalServerError, err.Error()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = fmt.Sprint(he.Message)
		if he.Internal != nil {
			msg += ": " + he.Internal.Error()
		}
	}
	_ = c.JSON(status, map[string]string{"message": msg})
}
