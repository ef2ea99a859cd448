package harness_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/harness"
)

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	withHeader := func(key, value string, h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(key, value)
			h(w, r)
		}
	}
	for _, tc := range []struct {
		name       string
		handler    http.HandlerFunc
		timeout    time.Duration
		code       errs.Code
		status     int
		retryAfter time.Duration
		contains   []string
	}{
		{name: "500", handler: reply(500, `{"message":"boom"}`), code: errs.CodeManagerUnavailable, status: 500,
			contains: []string{"500 Internal Server Error", "boom"}},
		{name: "502 without body", handler: reply(502, ""), code: errs.CodeManagerUnavailable, status: 502,
			contains: []string{"502 Bad Gateway"}},
		{name: "503 with Retry-After seconds", handler: withHeader("Retry-After", "7", reply(503, "")),
			code: errs.CodeManagerUnavailable, status: 503, retryAfter: 7 * time.Second},
		{name: "503 with Retry-After date", handler: withHeader("Retry-After", now.Add(30*time.Second).Format(http.TimeFormat), reply(503, "")),
			code: errs.CodeManagerUnavailable, status: 503, retryAfter: 30 * time.Second},
		{name: "429", handler: withHeader("Retry-After", "2", reply(429, `{"message":"slow down"}`)),
			code: errs.CodeManagerUnavailable, status: 429, retryAfter: 2 * time.Second, contains: []string{"slow down"}},
		{name: "429 with unparsable Retry-After", handler: withHeader("Retry-After", "soon", reply(429, "")),
			code: errs.CodeManagerUnavailable, status: 429},
		{name: "400", handler: reply(400, `{"message":"bad field"}`), code: errs.CodeManagerRejected, status: 400,
			contains: []string{"400 Bad Request", "bad field"}},
		{name: "401", handler: reply(401, `{"message":"expired token"}`), code: errs.CodeUnauthorized, status: 401},
		{name: "403", handler: reply(403, ""), code: errs.CodeUnauthorized, status: 403},
		{name: "404", handler: reply(404, `{"message":"no such delegate"}`), code: errs.CodeNotFound, status: 404},
		{name: "409", handler: reply(409, `{"message":"taken"}`), code: errs.CodeAcquireConflict, status: 409},
		{name: "422", handler: reply(422, "unprocessable"), code: errs.CodeManagerRejected, status: 422},
		{name: "302 is not followed", handler: withHeader("Location", "/elsewhere", reply(302, "")),
			code: errs.CodeManagerRejected, status: 302, contains: []string{"302 Found"}},
		{name: "connection reset", handler: func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, code: errs.CodeManagerUnavailable},
		{name: "timeout", handler: func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			timeout: 50 * time.Millisecond, code: errs.CodeManagerUnavailable, contains: []string{"no answer within 50ms"}},
		{name: "malformed JSON", handler: reply(200, `{"delegateTaskEvents": [`), code: errs.CodeMalformedResponse, status: 200},
		{name: "not JSON at all", handler: reply(200, `<html>maintenance</html>`), code: errs.CodeMalformedResponse, status: 200,
			contains: []string{"maintenance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var elsewhere atomic.Bool
			endpoint, rec := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/elsewhere") {
					elsewhere.Store(true)
				}
				tc.handler(w, r)
			})
			logger, logs := newLogger()
			c := newClient(t, endpoint, func(o *harness.Options) {
				o.Now = newClock(now).Now
				o.Logger = logger
				if tc.timeout > 0 {
					o.Timeout = tc.timeout
				}
			})

			_, err := c.Poll(t.Context(), "del-123")
			require.Error(t, err)
			var e *errs.Error
			require.True(t, errors.As(err, &e))
			require.Equal(t, tc.code, e.Code, "error: %v", err)
			require.Equal(t, "poll task events of delegate del-123", e.Op)
			require.Equal(t, tc.status, e.Status)
			require.Equal(t, tc.code == errs.CodeManagerUnavailable, errs.Retryable(err))
			require.Equal(t, tc.retryAfter, errs.RetryAfter(err))
			for _, s := range tc.contains {
				require.Contains(t, err.Error(), s)
			}
			if tc.name == "timeout" {
				require.ErrorIs(t, err, context.DeadlineExceeded)
			}
			require.False(t, elsewhere.Load(), "a redirect must not be followed")
			requireNoCredentials(t, rec, err.Error(), logs.String())
		})
	}
}

// requireNoCredentials checks that none of texts holds the account secret or a token sent to
// the server behind rec.
func requireNoCredentials(t *testing.T, rec *recorder, texts ...string) {
	t.Helper()
	toks := tokensSent(t, rec)
	require.NotEmpty(t, toks)
	for _, s := range texts {
		require.NotContains(t, s, testSecret)
		for _, tok := range toks {
			require.NotContains(t, s, tok)
		}
		// The encoded protected header starts every minted token.
		require.NotContains(t, s, "eyJhbGciOiJkaXIi")
	}
}

func TestErrorTextNeverCarriesTheTokenOrSecret(t *testing.T) {
	t.Parallel()
	// A manager (or proxy) that echoes the request back in its error answer.
	endpoint, rec := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "rejected "+r.Header.Get("Authorization")+" for secret "+testSecret)
	})
	c := newClient(t, endpoint, nil)
	_, err := c.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerRejected)

	tok := strings.TrimPrefix(rec.only(t).Header.Get("Authorization"), "Delegate ")
	require.NotEmpty(t, tok)
	require.NotContains(t, err.Error(), tok)
	require.NotContains(t, err.Error(), testSecret)
	require.Contains(t, err.Error(), "rejected Delegate [redacted] for secret [redacted]")
}

func TestErrorTextKeepsOnlyTheStartOfTheBody(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("a", 600) + "TAIL"
	endpoint, _ := newServer(t, reply(http.StatusBadRequest, body))
	c := newClient(t, endpoint, nil)
	_, err := c.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerRejected)
	require.Contains(t, err.Error(), strings.Repeat("a", 512))
	require.NotContains(t, err.Error(), strings.Repeat("a", 513))
	require.NotContains(t, err.Error(), "TAIL")
}

func TestCancelledCallKeepsItsCause(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	endpoint, _ := newServer(t, func(_ http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	c := newClient(t, endpoint, nil)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Acquire(ctx, "del-123", "task-9")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, errs.ErrManagerUnavailable)
	var e *errs.Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, "acquire task task-9", e.Op)
}

func TestAlreadyCancelledContext(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, `{}`))
	c := newClient(t, endpoint, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := c.Report(ctx, okResult(nil))
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, rec.all())
}

func TestRedirectsAreNotFollowedWithACustomHTTPClient(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	endpoint, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/elsewhere") {
			followed.Store(true)
			reply(http.StatusOK, `{}`)(w, r)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	// The zero http.Client follows redirects; the harness client must override that.
	c := newClient(t, endpoint, func(o *harness.Options) { o.HTTPClient = &http.Client{} })
	_, err := c.Poll(t.Context(), "del-123")
	require.ErrorIs(t, err, errs.ErrManagerRejected)
	require.False(t, followed.Load())
}
