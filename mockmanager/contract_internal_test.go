package mockmanager

import (
	"context"
	"encoding/json"
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
	book := newLogBook()
	log := slog.New(book)
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

	require.Equal(t, http.Header{"Content-Type": {"application/json"}}, rec.Header())
	var body apiError
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, "invalid_response", body.Code)
	const prefix = "the mock manager produced a 200 response that violates the admin contract: "
	require.True(t, strings.HasPrefix(body.Message, prefix), body.Message)
	requireViolationLogged(t, book, "admin", "GetFaults", strings.TrimPrefix(body.Message, prefix))
}

// requireViolationLogged asserts that the one contract record of book is the error that a 200
// answer of operation violates the contract of api.
func requireViolationLogged(t *testing.T, book *logBook, api, operation, reason string) {
	t.Helper()
	require.Equal(t, []logged{{level: slog.LevelError, msg: "response violates the contract", keys: []string{"api", "operation", "status", "error"},
		attrs: map[string]string{"api": api, "operation": operation, "status": "200", "error": reason}}}, book.contract())
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
	book := newLogBook()
	log := slog.New(book)
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

	require.Equal(t, http.Header{"Content-Type": {"application/json"}}, rec.Header())
	require.Len(t, body, 1, "the log service's error body has error_msg only")
	const prefix = "the mock manager produced a 200 response that violates the log service contract: "
	require.True(t, strings.HasPrefix(body["error_msg"], prefix), body["error_msg"])
	requireViolationLogged(t, book, "log service", "UploadLink", strings.TrimPrefix(body["error_msg"], prefix))
}
