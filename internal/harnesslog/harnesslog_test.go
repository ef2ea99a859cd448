package harnesslog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/errs"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/harnesslog"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// contractCheck is a RoundTripper that validates every request the transport sends and every
// answer it gets against the log service contract, on the client's side of the wire: the mock
// validates them too, but a test of the client must not rely on the server alone.
type contractCheck struct {
	t      testing.TB
	next   http.RoundTripper
	router routers.Router
	prefix string

	mu    sync.Mutex
	calls []string
}

func newContractCheck(t testing.TB, prefix string) *contractCheck {
	t.Helper()
	spec, err := logapi.GetSpec()
	require.NoError(t, err)
	spec.Servers = nil
	router, err := gorillamux.NewRouter(spec)
	require.NoError(t, err)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &contractCheck{t: t, next: tr, router: router, prefix: prefix}
}

func (c *contractCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		body = b
	}
	routed := req.Clone(req.Context())
	routed.URL.Path = strings.TrimPrefix(routed.URL.Path, c.prefix)
	routed.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(routed)
	if err != nil {
		return nil, fmt.Errorf("contract has no route for %s %s: %w", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: routed, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: func(context.Context, *openapi3filter.AuthenticationInput) error { return nil }},
	}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		return nil, fmt.Errorf("request %s violates the contract: %w", route.Operation.OperationID, err)
	}
	c.mu.Lock()
	c.calls = append(c.calls, route.Operation.OperationID)
	c.mu.Unlock()

	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(req.Context(), out.SetBodyBytes(answer)); err != nil {
		return nil, fmt.Errorf("answer %d to %s violates the contract: %w", resp.StatusCode, route.Operation.OperationID, err)
	}
	return resp, nil
}

func (c *contractCheck) operations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// env is a mock manager with its log service, and a client that checks the contract.
type env struct {
	mm    *mockmanager.TestServer
	check *contractCheck
	hc    *http.Client
}

func newEnv(t *testing.T, opts mockmanager.Options) *env {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	mm := mockmanager.NewTest(t, opts)
	check := newContractCheck(t, mockmanager.LogServicePath)
	return &env{mm: mm, check: check, hc: &http.Client{Transport: check}}
}

func (e *env) settings() harnesslog.Settings {
	return harnesslog.Settings{URL: e.mm.LogServiceURL(), AccountID: e.mm.AccountID(), Token: e.mm.LogToken()}
}

func (e *env) config(t *testing.T, s harnesslog.Settings) logstream.Config {
	t.Helper()
	raw, err := json.Marshal(s)
	require.NoError(t, err)
	return logstream.Config{Kind: harnesslog.Kind, Settings: raw}
}

func lines(texts ...string) []logstream.Line {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	out := make([]logstream.Line, len(texts))
	for i, s := range texts {
		out[i] = logstream.Line{Pos: i, Out: s, Time: at.Add(time.Duration(i) * time.Second)}
	}
	return out
}

func outs(ls []mockmanager.LogLine) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Out)
	}
	return out
}

func TestStepLogRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		indirect bool
		via      mockmanager.LogBlobSource
		upload   []string
	}{
		{"direct upload through a signed link", false, mockmanager.BlobViaLink, []string{"UploadLink", "StorageUpload"}},
		{"indirect upload through the service", true, mockmanager.BlobViaService, []string{"UploadBlob"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mockmanager.Options{})
			s := e.settings()
			s.URL += "//" // trailing slashes are ignored
			s.IndirectUpload = tt.indirect
			tr, opts, err := harnesslog.NewFactory(e.hc).Transport(e.config(t, s))
			require.NoError(t, err)
			require.Equal(t, logstream.Options{}, opts)
			ctx := context.Background()
			key := "stage-1/step-1"

			require.NoError(t, tr.Open(ctx, key))
			history := lines("first\n", "second\n", "third, with \"quotes\" & <html>\n")
			require.NoError(t, tr.Write(ctx, key, history[:2]))
			require.NoError(t, tr.Write(ctx, key, history[2:]))
			require.NoError(t, tr.Write(ctx, key, nil), "nothing to write is no call")

			streamed, err := e.mm.StreamLines("", key)
			require.NoError(t, err)
			require.Equal(t, []string{"first\n", "second\n", "third, with \"quotes\" & <html>\n"}, outs(streamed))
			require.Equal(t, 2, streamed[2].Pos)
			require.Equal(t, "info", *streamed[0].Level)
			require.True(t, history[1].Time.Equal(streamed[1].Time))

			require.NoError(t, tr.Upload(ctx, key, history))
			require.NoError(t, tr.Close(ctx, key, false))

			blob, err := e.mm.Blob("", key)
			require.NoError(t, err)
			require.Equal(t, tt.via, blob.Via)
			require.Equal(t, outs(streamed), outs(blob.Lines))
			st, err := e.mm.Stream("", key)
			require.NoError(t, err)
			require.False(t, st.Open)

			want := append(append([]string{"OpenStream", "WriteStream", "WriteStream"}, tt.upload...), "CloseStream")
			require.Equal(t, want, e.check.operations())
		})
	}
}

func TestSnapshotCloseKeepsTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mockmanager.Options{})
	tr, err := harnesslog.New(e.hc, e.settings())
	require.NoError(t, err)
	ctx := context.Background()
	// Someone else opened the stream (skip_opening_stream); the runner writes and closes with a
	// snapshot instead of uploading.
	lc, err := logapi.NewClientWithResponses(e.mm.LogServiceURL(), logapi.WithHTTPClient(e.hc),
		logapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("X-Harness-Token", e.mm.LogToken())
			return nil
		}))
	require.NoError(t, err)
	res, err := lc.OpenStreamWithResponse(ctx, &logapi.OpenStreamParams{AccountID: e.mm.AccountID(), Key: "s/k"})
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode())

	require.NoError(t, tr.Write(ctx, "s/k", lines("kept")))
	require.NoError(t, tr.Close(ctx, "s/k", true))
	blob, err := e.mm.Blob("", "s/k")
	require.NoError(t, err)
	require.Equal(t, mockmanager.BlobViaSnapshot, blob.Via)
	require.Equal(t, []string{"kept"}, outs(blob.Lines))
}

func TestWriteToAStreamThatIsNotOpenIsNoError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mockmanager.Options{})
	tr, err := harnesslog.New(e.hc, e.settings())
	require.NoError(t, err)
	require.NoError(t, tr.Write(context.Background(), "never/opened", lines("dropped\n")))
	_, err = e.mm.StreamLines("", "never/opened")
	require.ErrorIs(t, err, errs.ErrNotFound)
}

func TestFactoryReadsTheStageLogConfig(t *testing.T) {
	t.Parallel()
	f := harnesslog.NewFactory(nil)
	tests := []struct {
		name     string
		settings string
		want     logstream.Options
		err      string
	}{
		{"flags", `{"url":"http://127.0.0.1:1/ls","account_id":"a","token":"t","trim_new_line_suffix":true,"skip_opening_stream":true,"skip_closing_stream":true,"indirect_upload":true,"dual_logging_enabled":false}`,
			logstream.Options{TrimNewline: true, SkipOpen: true, SkipClose: true}, ""},
		{"defaults", `{"url":"https://logs.example/","account_id":"a"}`, logstream.Options{}, ""},
		{"no url", `{"account_id":"a","token":"t"}`, logstream.Options{}, "the stage's log config has no url"},
		{"no settings", ``, logstream.Options{}, "the stage's log config is empty: it has no url"},
		{"null settings", `null`, logstream.Options{}, "has no url"},
		{"not an object", `["x"]`, logstream.Options{}, "not a log_config object"},
		{"relative url", `{"url":"log-service","account_id":"a"}`, logstream.Options{}, "not an absolute http(s) URL"},
		{"no account", `{"url":"http://127.0.0.1:1"}`, logstream.Options{}, "no account_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, opts, err := f.Transport(logstream.Config{Kind: harnesslog.Kind, Settings: json.RawMessage(tt.settings)})
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.Nil(t, tr)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, tr)
			require.Equal(t, tt.want, opts)
		})
	}
	_, _, err := f.Transport(logstream.Config{Kind: "drone", Settings: json.RawMessage(`{"url":"http://x"}`)})
	require.ErrorContains(t, err, `kind "drone"`)
}

func TestRefusalsSayWhichCallFailedAndWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mockmanager.Options{LogToken: "the-right-token"})
	s := e.settings()
	s.Token = "a-wrong-token"
	tr, err := harnesslog.New(e.hc, s)
	require.NoError(t, err)
	ctx := context.Background()
	calls := []struct {
		call string
		do   func() error
	}{
		{"open stream", func() error { return tr.Open(ctx, "k/1") }},
		{"write stream", func() error { return tr.Write(ctx, "k/1", lines("x\n")) }},
		{"get upload link", func() error { return tr.Upload(ctx, "k/1", lines("x\n")) }},
		{"close stream", func() error { return tr.Close(ctx, "k/1", true) }},
	}
	for _, c := range calls {
		err := c.do()
		require.Error(t, err, c.call)
		var se *harnesslog.StatusError
		require.ErrorAs(t, err, &se, c.call)
		require.Equal(t, c.call, se.Call)
		require.Equal(t, http.StatusBadRequest, se.Status)
		require.Contains(t, err.Error(), "harness log service: "+c.call+" k/1: status 400 Bad Request: the token is not valid")
		require.NotContains(t, err.Error(), "a-wrong-token")
		require.NotContains(t, err.Error(), "the-right-token")
		require.False(t, harnesslog.Retryable(err), "a refusal is not worth retrying")
	}

	s.Token = e.mm.LogToken()
	s.IndirectUpload = true
	s.AccountID = "not-this-account"
	tr, err = harnesslog.New(e.hc, s)
	require.NoError(t, err)
	err = tr.Upload(ctx, "k/2", lines("x\n"))
	require.ErrorContains(t, err, `upload blob k/2: status 400 Bad Request: the token is not valid for account "not-this-account"`)
}

// fakeService answers every call with what its handler says; for the failures the mock cannot
// produce.
func fakeService(t *testing.T, h http.HandlerFunc) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

func TestFailedLinkUploadNamesTheLinkWithoutItsSignature(t *testing.T) {
	t.Parallel()
	var base string
	url, hc := fakeService(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/blob/link/upload":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"link":%q,"expires":"2026-11-29T13:00:00Z"}`, base+"/bucket/acct/k?X-Goog-Signature=secret-signature")
		case "/bucket/acct/k":
			require.Empty(t, r.Header.Get("Content-Type"), "a link upload carries no content type")
			require.Empty(t, r.Header.Get("X-Harness-Token"), "a link upload carries no token")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<Error>storage is down</Error>")
		default:
			http.NotFound(w, r)
		}
	})
	base = url
	tr, err := harnesslog.New(hc, harnesslog.Settings{URL: url, AccountID: "acct", Token: "tok"})
	require.NoError(t, err)
	err = tr.Upload(context.Background(), "k", lines("x\n"))
	require.ErrorContains(t, err, "upload to link "+url+"/bucket/acct/k k: status 503 Service Unavailable: <Error>storage is down</Error>")
	require.NotContains(t, err.Error(), "secret-signature")
	require.True(t, harnesslog.Retryable(err), "an unavailable storage may come back")
}

func TestErrorsLeaveTheTokenOut(t *testing.T) {
	t.Parallel()
	url, hc := fakeService(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error_msg":"cannot check token %s"}`, r.Header.Get("X-Harness-Token"))
	})
	tr, err := harnesslog.New(hc, harnesslog.Settings{URL: url, AccountID: "acct", Token: "sekret-token"})
	require.NoError(t, err)
	err = tr.Open(context.Background(), "k")
	require.ErrorContains(t, err, "open stream k: status 500 Internal Server Error: cannot check token [token]")
	require.NotContains(t, err.Error(), "sekret-token")
	require.True(t, harnesslog.Retryable(err))
}

func TestUnreachableServiceIsRetryable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	tr, err := harnesslog.New(&http.Client{Transport: &http.Transport{}}, harnesslog.Settings{URL: "http://" + addr, AccountID: "a"})
	require.NoError(t, err)
	err = tr.Open(context.Background(), "k")
	require.ErrorContains(t, err, "harness log service: open stream k:")
	require.True(t, harnesslog.Retryable(err))
	var r interface{ Retryable() bool }
	require.ErrorAs(t, err, &r, "the error says itself whether it is worth retrying")
	require.True(t, r.Retryable())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = tr.Open(ctx, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, harnesslog.Retryable(err), "the caller gave up")
}

// deadlines records the deadline of every request and answers 204.
type deadlines struct {
	mu   sync.Mutex
	seen map[string]time.Duration
}

func (d *deadlines) RoundTrip(req *http.Request) (*http.Response, error) {
	left := time.Duration(-1)
	if dl, ok := req.Context().Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.seen[req.Method+" "+req.URL.Path] = left
	d.mu.Unlock()
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func TestEveryCallIsBounded(t *testing.T) {
	t.Parallel()
	d := &deadlines{seen: map[string]time.Duration{}}
	tr, err := harnesslog.New(&http.Client{Transport: d}, harnesslog.Settings{URL: "http://logs.invalid/ls", AccountID: "a", IndirectUpload: true})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, tr.Open(ctx, "k"))
	require.NoError(t, tr.Write(ctx, "k", lines("x\n")))
	require.NoError(t, tr.Upload(ctx, "k", lines("x\n")))
	require.NoError(t, tr.Close(ctx, "k", false))
	for call, want := range map[string]time.Duration{
		"POST /ls/stream":   harnesslog.RequestTimeout,
		"PUT /ls/stream":    harnesslog.RequestTimeout,
		"DELETE /ls/stream": harnesslog.RequestTimeout,
		"POST /ls/blob":     harnesslog.UploadTimeout,
	} {
		left, ok := d.seen[call]
		require.True(t, ok, "no %s call", call)
		require.Positive(t, left, "%s has no deadline", call)
		require.LessOrEqual(t, left, want, call)
	}
	require.Equal(t, 15*time.Second, harnesslog.RequestTimeout)
}

func TestRetryableOfOtherErrors(t *testing.T) {
	t.Parallel()
	require.False(t, harnesslog.Retryable(nil))
	require.False(t, harnesslog.Retryable(errors.New("plain")))
	require.True(t, harnesslog.Retryable(&harnesslog.StatusError{Status: http.StatusTooManyRequests}))
	require.False(t, harnesslog.Retryable(&harnesslog.StatusError{Status: http.StatusForbidden}))
}

func TestEmptyLogUploads(t *testing.T) {
	t.Parallel()
	for _, indirect := range []bool{false, true} {
		t.Run(fmt.Sprintf("indirect=%v", indirect), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mockmanager.Options{})
			s := e.settings()
			s.IndirectUpload = indirect
			tr, _, err := harnesslog.NewFactory(e.hc).Transport(e.config(t, s))
			require.NoError(t, err)
			ctx := context.Background()
			key := "stage-1/silent-step"
			require.NoError(t, tr.Open(ctx, key))
			require.NoError(t, tr.Upload(ctx, key, nil), "a step that printed nothing has an empty log")
			require.NoError(t, tr.Close(ctx, key, false))
			blob, err := e.mm.Blob("", key)
			require.NoError(t, err)
			require.Empty(t, blob.Lines)
		})
	}
}
