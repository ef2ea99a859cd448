package mockmanager

import (
	"log/slog"
	"net/http/httptest"
	"testing"
)

// TestServer is a Server behind an httptest server that is closed when the test ends. Its methods
// are the Server's: Enqueue, WaitDone, Tasks and so on.
type TestServer struct {
	*Server
	// URL is the base URL of the manager and admin APIs, such as "http://127.0.0.1:41234".
	URL string
	// HTTP is the underlying httptest server.
	HTTP *httptest.Server
}

// NewTest starts a mock manager for the test t and registers its shutdown with t.Cleanup. Empty
// options are filled for tests: AccountID "test-account", a random AccountSecret (read it back with
// AccountSecret) unless Tokens are given, and a Logger writing to the test's output. A test reads:
//
//	mm := mockmanager.NewTest(t, mockmanager.Options{})
//	id, err := mm.Enqueue(mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK"})
//	require.NoError(t, err)
//	// start the runner under test against mm.URL, with mm.AccountID() and mm.AccountSecret()
//	st, err := mm.WaitDone(ctx, id)
func NewTest(t testing.TB, opts Options) *TestServer {
	t.Helper()
	if opts.AccountID == "" {
		opts.AccountID = "test-account"
	}
	if opts.AccountSecret == "" && len(opts.Tokens) == 0 {
		opts.AccountSecret = randomHex(16)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("start mock manager: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &TestServer{Server: s, URL: hs.URL, HTTP: hs}
}

// LogServiceURL returns the base URL of the mock log service, such as
// "http://127.0.0.1:41234/log-service": a stage's log_config url, with AccountID as its
// account_id and LogToken as its token.
func (ts *TestServer) LogServiceURL() string { return ts.URL + LogServicePath }

// LogConfig returns the log_config a CI stage needs to send its logs to the mock log service.
func (ts *TestServer) LogConfig() LogConfig { return ts.Server.LogConfig(ts.LogServiceURL()) }
