package harness_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testAccount = "acct-1"
	testSecret  = "0123456789abcdef0123456789abcdef"
	// prefix is the endpoint's path prefix, as in https://app.harness.io/gratis.
	prefix = "/gratis"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// captured is a request as the server saw it.
type captured struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// recorder keeps every request a test server receives.
type recorder struct {
	mu   sync.Mutex
	reqs []captured
}

func (r *recorder) all() []captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]captured(nil), r.reqs...)
}

// only returns the single request the server received.
func (r *recorder) only(t *testing.T) captured {
	t.Helper()
	reqs := r.all()
	require.Len(t, reqs, 1)
	return reqs[0]
}

// body decodes the single request's JSON body.
func (r *recorder) body(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.only(t).Body, &m))
	return m
}

// newServer starts a plain HTTP server that records every request before handing it to h, and
// returns the endpoint (with a path prefix) to give the client.
func newServer(t *testing.T, h http.HandlerFunc) (string, *recorder) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(rec.wrap(h))
	t.Cleanup(srv.Close)
	return srv.URL + prefix, rec
}

func (r *recorder) wrap(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, captured{
			Method: req.Method, Path: req.URL.Path, Query: req.URL.Query(), Header: req.Header.Clone(), Body: body,
		})
		r.mu.Unlock()
		h(w, req)
	})
}

// reply answers with status and, when body is not empty, a JSON body.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// newClient returns a client of endpoint with the test account and secret; mod adjusts the
// options first.
func newClient(t *testing.T, endpoint string, mod func(*harness.Options)) *harness.Client {
	t.Helper()
	opts := harness.Options{
		Endpoint:      endpoint,
		AccountID:     testAccount,
		AccountSecret: testSecret,
		// Generous: only there so that a broken test cannot hang.
		Timeout: 30 * time.Second,
		Logger:  slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := harness.New(opts)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func newLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// jsonValue decodes b, treating an empty body as JSON null.
func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	// Numbers stay exact: lastHeartBeat is a millisecond timestamp.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}
