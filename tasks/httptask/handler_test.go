package httptask_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/handlertest"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/httptask"
)

// echoed is what the test server saw of a request.
type echoed struct {
	Method string
	Host   string
	Header http.Header
	Body   string
}

// newServer starts a server whose routes the tests use, closed with the test.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, Host: r.Host, Header: r.Header, Body: string(body)})
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		var code int
		_, _ = fmt.Sscan(r.PathValue("code"), &code)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "status body")
	})
	mux.HandleFunc("/big/{size}", func(w http.ResponseWriter, r *http.Request) {
		var size int
		_, _ = fmt.Sscan(r.PathValue("size"), &size)
		_, _ = w.Write(pattern(size))
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "aé")
	})
	mux.HandleFunc("/redirect/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		_, _ = fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			http.Redirect(w, r, "/echo", http.StatusFound)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// pattern returns n bytes that differ by position, so a wrong slice of them shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// newHandler returns a handler whose idle connections are closed with the test.
func newHandler(t *testing.T) *httptask.Handler {
	t.Helper()
	h := &httptask.Handler{}
	t.Cleanup(h.CloseIdleConnections)
	return h
}

// start calls h.Run with data in its own goroutine; handlertest.Wait collects the response.
func start(ctx context.Context, h *httptask.Handler, data gentasks.HttpTaskData) <-chan gentasks.HttpTaskResponseObject {
	return handlertest.Start(func() (gentasks.HttpTaskResponseObject, error) {
		return h.Run(ctx, gentasks.HttpTaskRequestObject{Body: &data})
	})
}

func run(t *testing.T, ctx context.Context, h *httptask.Handler, data gentasks.HttpTaskData) gentasks.HttpTaskResponseObject {
	t.Helper()
	return handlertest.Wait(t, start(ctx, h, data))
}

func succeeded(t *testing.T, resp gentasks.HttpTaskResponseObject) gentasks.HttpTaskOutput {
	t.Helper()
	ok, isOK := resp.(gentasks.HttpTask200JSONResponse)
	require.True(t, isOK, "want 200, got %#v", resp)
	return gentasks.HttpTaskOutput(ok)
}

func failed(t *testing.T, resp gentasks.HttpTaskResponseObject) gentasks.HttpTaskFailure {
	t.Helper()
	f, isFailure := resp.(gentasks.HttpTask422JSONResponse)
	require.True(t, isFailure, "want 422, got %#v", resp)
	return gentasks.HttpTaskFailure(f)
}

func broken(t *testing.T, resp gentasks.HttpTaskResponseObject, status int) string {
	t.Helper()
	f, isDefault := resp.(gentasks.HttpTaskdefaultJSONResponse)
	require.True(t, isDefault, "want the default response, got %#v", resp)
	require.Equal(t, status, f.StatusCode)
	return f.Body.Message
}

func ptr[T any](v T) *T { return &v }

func decodeEcho(t *testing.T, out gentasks.HttpTaskOutput) echoed {
	t.Helper()
	var e echoed
	require.NoError(t, json.Unmarshal([]byte(out.Body), &e))
	return e
}

func TestMethodsHeadersAndBody(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	h := newHandler(t)
	cases := []struct {
		method   *gentasks.HttpTaskDataMethod
		body     *string
		wantSent string
	}{
		{nil, nil, http.MethodGet},
		{ptr(gentasks.HttpTaskDataMethodGET), nil, http.MethodGet},
		{ptr(gentasks.HttpTaskDataMethodPOST), ptr(`{"k":"v"}`), http.MethodPost},
		{ptr(gentasks.HttpTaskDataMethodPUT), ptr("put body"), http.MethodPut},
		{ptr(gentasks.HttpTaskDataMethodPATCH), ptr("patch body"), http.MethodPatch},
		{ptr(gentasks.HttpTaskDataMethodDELETE), nil, http.MethodDelete},
		{ptr(gentasks.HttpTaskDataMethodOPTIONS), nil, http.MethodOptions},
	}
	for _, tc := range cases {
		t.Run(tc.wantSent, func(t *testing.T) {
			t.Parallel()
			out := succeeded(t, run(t, t.Context(), h, gentasks.HttpTaskData{
				Url:    srv.URL + "/echo",
				Method: tc.method,
				Body:   tc.body,
				Headers: &map[string]string{
					"X-Custom":      "custom value",
					"authorization": "Bearer s3cret",
				},
			}))
			require.Equal(t, http.StatusOK, out.Status)
			require.Equal(t, "a, b", out.Headers["X-Multi"])
			require.Equal(t, "application/json", out.Headers["Content-Type"])
			e := decodeEcho(t, out)
			require.Equal(t, tc.wantSent, e.Method)
			require.Equal(t, "custom value", e.Header.Get("X-Custom"))
			require.Equal(t, "Bearer s3cret", e.Header.Get("Authorization"))
			require.Equal(t, "dlite", e.Header.Get("User-Agent"))
			if tc.body != nil {
				require.Equal(t, *tc.body, e.Body)
			} else {
				require.Empty(t, e.Body)
			}
		})
	}
}

func TestHead(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	out := succeeded(t, run(t, t.Context(), newHandler(t), gentasks.HttpTaskData{
		Url:    srv.URL + "/echo",
		Method: ptr(gentasks.HttpTaskDataMethodHEAD),
	}))
	require.Equal(t, http.StatusOK, out.Status)
	require.Equal(t, "a, b", out.Headers["X-Multi"])
	require.Empty(t, out.Body)
}

func TestHostAndUserAgentHeaders(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	out := succeeded(t, run(t, t.Context(), newHandler(t), gentasks.HttpTaskData{
		Url:     srv.URL + "/echo",
		Headers: &map[string]string{"Host": "virtual.example", "User-Agent": "custom-client/1.0"},
	}))
	e := decodeEcho(t, out)
	require.Equal(t, "virtual.example", e.Host)
	require.Equal(t, "custom-client/1.0", e.Header.Get("User-Agent"))
}

func TestExpectedStatus(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	h := newHandler(t)
	cases := []struct {
		name     string
		code     int
		expected *[]int
		wantMsg  string // empty: success
	}{
		{"200 is a default success", 200, nil, ""},
		{"204 is a default success", 204, nil, ""},
		{"299 is a default success", 299, nil, ""},
		{"500 is a default failure", 500, nil, "unexpected status 500 Internal Server Error (expected 2xx)"},
		{"404 is a default failure", 404, nil, "unexpected status 404 Not Found (expected 2xx)"},
		{"an empty list means 2xx", 503, &[]int{}, "unexpected status 503 Service Unavailable (expected 2xx)"},
		{"listed 404 is a success", 404, &[]int{200, 404}, ""},
		{"listed 201 is a success", 201, &[]int{201}, ""},
		{"unlisted 200 is a failure", 200, &[]int{201, 202}, "unexpected status 200 OK (expected 201, 202)"},
		{"unnamed status", 599, &[]int{200}, "unexpected status 599 (expected 200)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := run(t, t.Context(), h, gentasks.HttpTaskData{
				Url:            fmt.Sprintf("%s/status/%d", srv.URL, tc.code),
				ExpectedStatus: tc.expected,
			})
			var out gentasks.HttpTaskOutput
			if tc.wantMsg == "" {
				out = succeeded(t, resp)
			} else {
				f := failed(t, resp)
				require.Equal(t, tc.wantMsg, f.Message)
				out = f.Data
			}
			require.Equal(t, tc.code, out.Status)
			if tc.code != http.StatusNoContent {
				require.Equal(t, "status body", out.Body)
			}
			require.NotNil(t, out.Headers)
		})
	}
}

func TestBodyKeepsTheFirst64KiB(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	h := newHandler(t)
	for _, size := range []int{0, 100, httptask.DefaultBodyLimit, httptask.DefaultBodyLimit + 1, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			out := succeeded(t, run(t, t.Context(), h, gentasks.HttpTaskData{Url: fmt.Sprintf("%s/big/%d", srv.URL, size)}))
			want := pattern(size)
			if size > httptask.DefaultBodyLimit {
				want = want[:httptask.DefaultBodyLimit]
			}
			require.Equal(t, string(want), out.Body)
		})
	}
}

func TestBodyLimitDoesNotSplitARune(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	h := &httptask.Handler{BodyLimit: 2} // "aé" is 3 bytes; 2 would cut é
	t.Cleanup(h.CloseIdleConnections)
	out := succeeded(t, run(t, t.Context(), h, gentasks.HttpTaskData{Url: srv.URL + "/text"}))
	require.Equal(t, "a", out.Body)
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	h := newHandler(t)

	out := succeeded(t, run(t, t.Context(), h, gentasks.HttpTaskData{Url: srv.URL + "/redirect/8"}))
	require.Equal(t, http.MethodGet, decodeEcho(t, out).Method)

	msg := broken(t, run(t, t.Context(), h, gentasks.HttpTaskData{Url: srv.URL + "/loop"}), http.StatusBadGateway)
	require.Equal(t, "GET "+srv.URL+"/loop: stopped after 10 redirects", msg)
}

// hangingServer accepts requests and answers none of them until the client gives up. arrived
// receives each request as it comes in.
func hangingServer(t *testing.T) (srv *httptest.Server, arrived <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	release := make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv, ch
}

func TestTimeoutSeconds(t *testing.T) {
	t.Parallel()
	srv, _ := hangingServer(t)
	msg := broken(t, run(t, t.Context(), newHandler(t), gentasks.HttpTaskData{
		Url:            srv.URL + "/slow?token=kept",
		Method:         ptr(gentasks.HttpTaskDataMethodPOST),
		TimeoutSeconds: ptr(1),
	}), http.StatusGatewayTimeout)
	require.Equal(t, "POST "+srv.URL+"/slow?token=kept: timed out after 1s (timeoutSeconds)", msg)
}

func TestContextEnds(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{errs.ErrAborted, errs.ErrShuttingDown} {
		t.Run(string(errs.CodeOf(cause)), func(t *testing.T) {
			t.Parallel()
			srv, arrived := hangingServer(t)
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			done := start(ctx, newHandler(t), gentasks.HttpTaskData{Url: srv.URL + "/slow", TimeoutSeconds: ptr(3600)})
			<-arrived
			cancel(cause)
			msg := broken(t, handlertest.Wait(t, done), http.StatusBadGateway)
			require.Equal(t, "GET "+srv.URL+"/slow: "+cause.Error(), msg)
		})
	}
}

func TestTaskDeadline(t *testing.T) {
	t.Parallel()
	srv, _ := hangingServer(t)
	ctx, cancel := context.WithTimeoutCause(t.Context(), 300*time.Millisecond, errs.ErrTimeout)
	defer cancel()
	msg := broken(t, run(t, ctx, newHandler(t), gentasks.HttpTaskData{Url: srv.URL}), http.StatusBadGateway)
	require.Equal(t, "GET "+srv.URL+": task timed out", msg)
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	msg := broken(t, run(t, t.Context(), newHandler(t), gentasks.HttpTaskData{
		Url:    "http://user:pa55word@" + addr + "/x",
		Method: ptr(gentasks.HttpTaskDataMethodDELETE),
	}), http.StatusBadGateway)
	require.True(t, strings.HasPrefix(msg, "DELETE http://user:xxxxx@"+addr+"/x: "), msg)
	require.Contains(t, msg, "connection refused")
	require.NotContains(t, msg, "pa55word")
}

func TestCredentialsAreNotLogged(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	ctx := tasks.WithLogger(t.Context(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	host := strings.TrimPrefix(srv.URL, "http://")
	succeeded(t, run(t, ctx, newHandler(t), gentasks.HttpTaskData{
		Url:     "http://user:pa55word@" + host + "/services/T0/B0/w3bh00k?api_key=k3y",
		Headers: &map[string]string{"Authorization": "Bearer s3cret"},
	}))
	require.Contains(t, logs.String(), "url=http://"+host+" ")
	require.Contains(t, logs.String(), "status=200")
	for _, secret := range []string{"s3cret", "pa55word", "k3y", "w3bh00k"} {
		require.NotContains(t, logs.String(), secret)
	}
}

func TestInjectedClient(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(client.CloseIdleConnections)
	h := &httptask.Handler{Client: client}
	f := failed(t, run(t, t.Context(), h, gentasks.HttpTaskData{Url: srv.URL + "/redirect/0"}))
	require.Equal(t, http.StatusFound, f.Data.Status)
	require.Equal(t, "/echo", f.Data.Headers["Location"])
}

func TestBadTask(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		data *gentasks.HttpTaskData
		want string
	}{
		{"no data", nil, "no data"},
		{"empty url", &gentasks.HttpTaskData{}, "not an http or https URL"},
		{"ftp", &gentasks.HttpTaskData{Url: "ftp://example.com/f"}, "not an http or https URL"},
		{"relative", &gentasks.HttpTaskData{Url: "/path"}, "not an http or https URL"},
		{"no host", &gentasks.HttpTaskData{Url: "http:///path"}, "has no host"},
		{"port only", &gentasks.HttpTaskData{Url: "http://:80/path"}, "has no host"},
		{"unparsable", &gentasks.HttpTaskData{Url: "http://[::1"}, "url:"},
		{"method", &gentasks.HttpTaskData{Url: "http://h", Method: ptr(gentasks.HttpTaskDataMethod("TRACE"))}, `"TRACE"`},
		{"header name", &gentasks.HttpTaskData{Url: "http://h", Headers: &map[string]string{"Bad Name": "v"}}, `"Bad Name"`},
		{"header value", &gentasks.HttpTaskData{Url: "http://h", Headers: &map[string]string{"X-Token": "s3cret\r\nInjected: 1"}}, "X-Token"},
		{"timeout too small", &gentasks.HttpTaskData{Url: "http://h", TimeoutSeconds: ptr(0)}, "timeoutSeconds 0"},
		{"timeout too large", &gentasks.HttpTaskData{Url: "http://h", TimeoutSeconds: ptr(86401)}, "timeoutSeconds 86401"},
		{"status too small", &gentasks.HttpTaskData{Url: "http://h", ExpectedStatus: &[]int{200, 99}}, "99"},
		{"status too large", &gentasks.HttpTaskData{Url: "http://h", ExpectedStatus: &[]int{600}}, "600"},
		{"too many statuses", &gentasks.HttpTaskData{Url: "http://h", ExpectedStatus: ptr(make([]int, 101))}, "at most 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := (&httptask.Handler{}).Run(t.Context(), gentasks.HttpTaskRequestObject{Body: tc.data})
			require.NoError(t, err)
			bad, isBad := resp.(gentasks.HttpTask400JSONResponse)
			require.True(t, isBad, "want 400, got %#v", resp)
			require.Contains(t, bad.Message, tc.want)
			require.NotContains(t, bad.Message, "s3cret")
		})
	}
}

func ExampleHandler_Run() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created "+r.URL.Path)
	}))
	defer srv.Close()
	h := &httptask.Handler{}
	defer h.CloseIdleConnections()

	resp, _ := h.Run(context.Background(), gentasks.HttpTaskRequestObject{Body: &gentasks.HttpTaskData{
		Url:            srv.URL + "/things",
		Method:         ptr(gentasks.HttpTaskDataMethodPOST),
		ExpectedStatus: &[]int{201},
	}})
	out := resp.(gentasks.HttpTask200JSONResponse)
	fmt.Println(out.Status, out.Body)
	// Output: 201 created /things
}
