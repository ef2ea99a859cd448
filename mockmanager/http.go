package mockmanager

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
)

// apiError is the error body of both APIs: the manager's Error (code and message) is a superset of
// the admin one (message).
type apiError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// newHandler builds the echo instance serving the manager API, the log service (under
// LogServicePath) and the admin API. Every operation goes through its contract's validation; the
// manager operations go through fault injection first, so an injected fault looks to a client
// exactly like a manager that failed before doing anything.
func (s *Server) newHandler() (*echo.Echo, error) {
	managerSpec, err := managerapi.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load manager contract: %w", err)
	}
	manager, err := newContract("manager", managerSpec, s.authenticate, s.log)
	if err != nil {
		return nil, err
	}
	adminSpec, err := adminapi.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load admin contract: %w", err)
	}
	admin, err := newContract("admin", adminSpec, nil, s.log)
	if err != nil {
		return nil, err
	}

	logSpec, err := logapi.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load log service contract: %w", err)
	}
	logs, err := newContract("log service", logSpec, s.logs.authenticate, s.log)
	if err != nil {
		return nil, err
	}
	logs.prefix = LogServicePath
	logs.describe = describeLogRequestError
	logs.refusal = logRefusal
	logs.streaming = map[string]bool{"TailStream": true}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard)
	e.HTTPErrorHandler = s.handleError
	e.Use(s.logRequests)

	managerMW := map[string][]echo.MiddlewareFunc{}
	for _, op := range manager.operations() {
		managerMW[op] = []echo.MiddlewareFunc{s.injectFaults, manager.middleware}
	}
	managerapi.RegisterHandlersWithOptions(e,
		managerapi.NewStrictHandler(managerAPI{s}, nil),
		managerapi.RegisterHandlersOptions{OperationMiddlewares: managerMW})

	logMW := map[string][]echo.MiddlewareFunc{}
	for _, op := range logs.operations() {
		logMW[op] = []echo.MiddlewareFunc{logs.middleware}
	}
	logMW["UploadLink"] = append(logMW["UploadLink"], withBaseURL)
	logapi.RegisterHandlersWithOptions(e,
		logapi.NewStrictHandler(logAPI{s: s, l: s.logs}, nil),
		logapi.RegisterHandlersOptions{BaseURL: LogServicePath, OperationMiddlewares: logMW})

	adminMW := map[string][]echo.MiddlewareFunc{}
	for _, op := range admin.operations() {
		adminMW[op] = []echo.MiddlewareFunc{admin.middleware}
	}
	adminMW["GetLogConfig"] = append(adminMW["GetLogConfig"], withBaseURL)
	adminapi.RegisterHandlersWithOptions(e,
		adminapi.NewStrictHandler(adminAPI{s}, nil),
		adminapi.RegisterHandlersOptions{OperationMiddlewares: adminMW})
	return e, nil
}

// handleError writes every error echo sees as an error body. A Go error from a handler is a bug of
// the mock and is logged.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := errorAnswer(err, c, s.log, "request failed")
	var body any = apiError{Code: codeFor(status), Message: msg}
	if strings.HasPrefix(c.Request().URL.Path, LogServicePath+"/") {
		// The log service has an error body of its own.
		body = logRefusal(status, msg)
	}
	if err := c.JSON(status, body); err != nil {
		s.log.Warn("write error response", "error", err)
	}
}

// errorAnswer is the status and message an error echo sees is answered with: an echo.HTTPError's
// own, else 500 with the error's text. An error that is no echo.HTTPError is a bug of the mock:
// it is logged at error level as failed.
func errorAnswer(err error, c echo.Context, log *slog.Logger, failed string) (int, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code, fmt.Sprint(he.Message)
	}
	log.Error(failed, "method", c.Request().Method, "path", c.Request().URL.Path, "error", err)
	return http.StatusInternalServerError, "internal error: " + err.Error()
}

func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusServiceUnavailable:
		return "unavailable"
	default:
		return "internal"
	}
}

// logRequests logs every request at debug level. Query strings and headers are left out: the
// Authorization header carries the Delegate token.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		s.log.Debug("request", "method", c.Request().Method, "path", c.Request().URL.Path,
			"status", c.Response().Status, "duration", time.Since(start))
		return nil
	}
}
