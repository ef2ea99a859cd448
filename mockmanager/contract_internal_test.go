package mockmanager

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
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
