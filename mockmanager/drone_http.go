package mockmanager

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	droneadmin "github.com/dlite-dev/dlite/gen/droneadmin"
)

const (
	droneRPCPrefix = "/rpc/v2/"
	// unrouted is the route of a request no operation of the contract matches.
	unrouted = "unrouted"
	// maxDroneBody bounds a request body the mock reads (a whole step log is at most 5 MiB plus
	// its JSON framing).
	maxDroneBody = 32 << 20
)

// newHandler builds the echo instance serving the runner RPC (answered by api) and the admin API.
// Runner RPC requests are counted and have their secret checked before routing, as on the real
// server; then every request and response is validated against its contract.
func (s *DroneServer) newHandler(api droneapi.StrictServerInterface) (*echo.Echo, error) {
	rpcSpec, err := droneapi.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load Drone RPC contract: %w", err)
	}
	// The secret is checked before routing, so the contract's security scheme is satisfied by
	// the time a request is validated.
	rpc, err := newContract("drone", rpcSpec, func(context.Context, *openapi3filter.AuthenticationInput) error { return nil }, s.log)
	if err != nil {
		return nil, err
	}
	rpc.refuse, rpc.replace, rpc.finish = s.refuseRPC, s.replaceRPC, droneHeaders
	adminSpec, err := droneadmin.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load Drone admin contract: %w", err)
	}
	admin, err := newContract("drone admin", adminSpec, nil, s.log)
	if err != nil {
		return nil, err
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard)
	e.HTTPErrorHandler = s.handleError
	e.Pre(s.gate(rpc))
	// A panic is a bug of the mock; like the real server, answer it with a 500 and keep serving.
	e.Use(middleware.Recover())

	rpcMW := map[string][]echo.MiddlewareFunc{}
	for _, op := range rpc.operations() {
		rpcMW[op] = []echo.MiddlewareFunc{rpc.middleware}
	}
	droneapi.RegisterHandlersWithOptions(e, droneapi.NewStrictHandler(api, nil),
		droneapi.RegisterHandlersOptions{OperationMiddlewares: rpcMW})

	adminMW := map[string][]echo.MiddlewareFunc{}
	for _, op := range admin.operations() {
		adminMW[op] = []echo.MiddlewareFunc{admin.middleware}
	}
	droneadmin.RegisterHandlersWithOptions(e, droneadmin.NewStrictHandler(droneAdminAPI{s}, nil),
		droneadmin.RegisterHandlersOptions{OperationMiddlewares: adminMW})
	return e, nil
}

// gate runs before routing on every runner RPC request: it names the route, checks the secret
// (403 with none configured, 401 for a missing or different token, both with an empty body),
// reads every body as JSON whatever its Content-Type, keeps the raw body for the log upload, and
// counts the answer by route and status.
func (s *DroneServer) gate(rpc *contract) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !strings.HasPrefix(req.URL.Path, droneRPCPrefix) {
				return next(c)
			}
			route := unrouted
			if r, _, err := rpc.router.FindRoute(req); err == nil {
				route = r.Operation.OperationID
			}
			start := time.Now()
			s.beginRequest(route)
			defer func() {
				s.endRequest(route, c.Response().Status)
				s.log.Debug("Drone RPC request", "route", route, "status", c.Response().Status, "duration", time.Since(start))
			}()
			switch token := req.Header.Get("X-Drone-Token"); {
			case s.opts.Secret == "":
				return c.NoContent(http.StatusForbidden)
			case subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Secret)) != 1:
				return c.NoContent(http.StatusUnauthorized)
			}
			raw, err := io.ReadAll(io.LimitReader(req.Body, maxDroneBody))
			if err != nil {
				return c.String(http.StatusInternalServerError, err.Error())
			}
			req.Body = io.NopCloser(bytes.NewReader(raw))
			if len(raw) > 0 || req.Method == http.MethodPut {
				req.Header.Set("Content-Type", "application/json")
			}
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), rawBodyKey{}, raw)))
			if err := next(c); err != nil {
				c.Error(err)
			}
			return nil
		}
	}
}

// refuseRPC answers a runner RPC request that does not fit the contract the way the real server
// fails it: 500 with the reason as text, but 400 with a JSON error for a card.
func (s *DroneServer) refuseRPC(ec echo.Context, operation string, _ int, msg string) error {
	s.log.Info("Drone RPC request refused", "operation", operation, "reason", msg)
	if operation == "UploadCard" {
		return ec.JSON(http.StatusBadRequest, droneapi.Error{Message: msg})
	}
	return ec.String(http.StatusInternalServerError, msg)
}

// replaceRPC answers in place of a runner RPC answer that does not fit the contract, a bug of the
// mock: it is logged and replaced by a plain-text 500 that says so.
func (s *DroneServer) replaceRPC(ec echo.Context, operation string, status int, err error) error {
	s.log.Error("Drone RPC response violates the contract", "operation", operation, "status", status, "error", err)
	return ec.String(http.StatusInternalServerError, fmt.Sprintf("%s %d: %v", invalidResponsePrefix, status, err))
}

// droneHeaders gives a runner RPC answer the real server's headers: JSON answers below 300 leave
// without a Content-Type, and every answer carries the no-cache headers.
func droneHeaders(h http.Header, status int) {
	if strings.HasPrefix(h.Get("Content-Type"), "application/json") && status < 300 {
		h.Del("Content-Type")
	}
	noCache(h)
}

// invalidResponsePrefix starts the text of a 500 the mock sends instead of an answer that
// violates the contract.
const invalidResponsePrefix = "the mock Drone server produced a response that violates the contract:"

// noCache sets the headers the real server adds to every RPC answer.
func noCache(h http.Header) {
	h.Set("Cache-Control", "no-cache, private, max-age=0")
	h.Set("Expires", time.Unix(0, 0).UTC().Format(http.TimeFormat))
	h.Set("Pragma", "no-cache")
	h.Set("X-Accel-Expires", "0")
}

// handleError answers the errors echo sees: on the runner RPC as plain text (404 for an unknown
// path and 405 for a wrong method, as the real router does; 500 for anything else), on the admin
// API as a JSON error. A Go error from a handler is a bug of the mock and is logged.
func (s *DroneServer) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := errorAnswer(err, c, s.log, "Drone request failed")
	if strings.HasPrefix(c.Request().URL.Path, droneRPCPrefix) {
		if status == http.StatusNotFound {
			msg = "404 page not found"
		}
		err = c.String(status, msg+"\n")
	} else {
		err = c.JSON(status, apiError{Code: codeFor(status), Message: msg})
	}
	if err != nil {
		s.log.Warn("write error response", "error", err)
	}
}
