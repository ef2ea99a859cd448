package mockmanager

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
)

// brokenAdmin answers GetFaults with a rate the admin contract forbids.
type brokenAdmin struct{ adminAPI }

func (brokenAdmin) GetFaults(context.Context, adminapi.GetFaultsRequestObject) (adminapi.GetFaultsResponseObject, error) {
	return adminapi.GetFaults200JSONResponse{ErrorRate: new(float32(7))}, nil
}

// A response outside the contract never reaches the client: it becomes a 500 that says why.
func TestInvalidResponseBecomes500(t *testing.T) {
	t.Parallel()
	spec, err := adminapi.GetSpec()
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := newContract("admin", spec, nil, log)
	require.NoError(t, err)
	s := &Server{log: log}
	e := echo.New()
	e.HTTPErrorHandler = s.handleError
	mw := map[string][]echo.MiddlewareFunc{}
	for _, op := range c.operations() {
		mw[op] = []echo.MiddlewareFunc{c.middleware}
	}
	adminapi.RegisterHandlersWithOptions(e, adminapi.NewStrictHandler(brokenAdmin{}, nil),
		adminapi.RegisterHandlersOptions{OperationMiddlewares: mw})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/faults", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Contains(t, rec.Body.String(), "violates the admin contract")
	require.Contains(t, rec.Body.String(), "errorRate")
	require.NotContains(t, strings.ToLower(rec.Body.String()), `"errorrate":7`)
}

// brokenLogs answers UploadLink without the link the log service contract requires.
type brokenLogs struct{ logAPI }

func (brokenLogs) UploadLink(context.Context, logapi.UploadLinkRequestObject) (logapi.UploadLinkResponseObject, error) {
	return logapi.UploadLink200JSONResponse{}, nil
}

// The log service's contract holds the mock to the service's own error body, also when the mock
// itself is at fault, and finds its routes under the mount prefix.
func TestInvalidLogServiceResponseBecomes500(t *testing.T) {
	t.Parallel()
	spec, err := logapi.GetSpec()
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := newContract("log service", spec, func(context.Context, *openapi3filter.AuthenticationInput) error { return nil }, log)
	require.NoError(t, err)
	c.prefix, c.describe, c.refusal = LogServicePath, describeLogRequestError, logRefusal
	s := &Server{log: log}
	e := echo.New()
	e.HTTPErrorHandler = s.handleError
	mw := map[string][]echo.MiddlewareFunc{}
	for _, op := range c.operations() {
		mw[op] = []echo.MiddlewareFunc{c.middleware}
	}
	logapi.RegisterHandlersWithOptions(e, logapi.NewStrictHandler(brokenLogs{}, nil),
		logapi.RegisterHandlersOptions{BaseURL: LogServicePath, OperationMiddlewares: mw})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, LogServicePath+"/blob/link/upload?accountID=a&key=k", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	var body map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Contains(t, body["error_msg"], "violates the log service contract")
	require.Contains(t, body["error_msg"], "link")
}
