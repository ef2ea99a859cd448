package mockmanager

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
)

// logged is one log record as a handler receives it: its level, message, the keys of its
// attributes in order (those the logger was made with first), and their values as text.
type logged struct {
	level slog.Level
	msg   string
	keys  []string
	attrs map[string]string
}

// logBook is a slog.Handler that keeps every record, so that a test can hold the mock to the log
// lines operators and tests grep for.
type logBook struct {
	mu      *sync.Mutex
	records *[]logged
	with    []slog.Attr
}

func newLogBook() *logBook { return &logBook{mu: &sync.Mutex{}, records: &[]logged{}} }

func (b *logBook) Enabled(context.Context, slog.Level) bool { return true }

func (b *logBook) Handle(_ context.Context, r slog.Record) error {
	l := logged{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		l.keys = append(l.keys, a.Key)
		l.attrs[a.Key] = a.Value.Resolve().String()
		return true
	}
	for _, a := range b.with {
		add(a)
	}
	r.Attrs(add)
	b.mu.Lock()
	defer b.mu.Unlock()
	*b.records = append(*b.records, l)
	return nil
}

func (b *logBook) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *b
	c.with = append(append([]slog.Attr(nil), b.with...), attrs...)
	return &c
}

// WithGroup is not used by the mock; a group would only prefix the keys.
func (b *logBook) WithGroup(string) slog.Handler { return b }

// reset forgets the records kept so far.
func (b *logBook) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	*b.records = nil
}

// contract returns the records of info level or above that a contract's validation wrote: those
// of a refused request or of an answer that violates the contract.
func (b *logBook) contract() []logged {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []logged
	for _, l := range *b.records {
		if l.level >= slog.LevelInfo && (strings.Contains(l.msg, "refused") || strings.Contains(l.msg, "contract")) {
			out = append(out, l)
		}
	}
	return out
}

// noCacheHeaders are the headers the real Drone server adds to every RPC answer.
func noCacheHeaders() http.Header {
	return http.Header{
		"Cache-Control":   {"no-cache, private, max-age=0"},
		"Expires":         {"Thu, 01 Jan 1970 00:00:00 GMT"},
		"Pragma":          {"no-cache"},
		"X-Accel-Expires": {"0"},
	}
}

// TestDroneRPCAnswers pins the runner RPC on the wire, headers and bodies to the byte: JSON
// answers below 300 leave without a Content-Type, every answer carries the no-cache headers, and
// a request the contract refuses fails as on the real server (500 with the reason as text, 400
// with a JSON error for a card), logged at info with the operation and the reason.
func TestDroneRPCAnswers(t *testing.T) {
	t.Parallel()
	const stage = `{"arch":"amd64","build_id":1,"created":1767225600,"errignore":false,"exit_code":0,"id":1,` +
		`"kind":"pipeline","machine":"m","name":"default","number":1,"on_failure":false,"on_success":true,` +
		`"os":"linux","repo_id":1,"started":0,"status":"pending","stopped":0,"type":"exec","updated":1767225600,"version":2}` + "\n"
	tests := []struct {
		name, method, path, body string
		status                   int
		contentType              string // "" when the answer has none
		answer                   string
		refused                  string // the operation of a refused request; "" when none is refused
		reason                   string
	}{
		{"JSON answer", http.MethodPost, "/rpc/v2/stage/1?machine=m", "", http.StatusOK, "", stage, "", ""},
		{"empty answer", http.MethodPost, "/rpc/v2/ping", "", http.StatusOK, "", "", "", ""},
		{"text answer", http.MethodPost, "/rpc/v2/stage/999?machine=m", "", http.StatusInternalServerError,
			"text/plain", "sql: no rows in result set", "", ""},
		{"refused request", http.MethodPost, "/rpc/v2/stage", `{"kind":`, http.StatusInternalServerError,
			"text/plain; charset=UTF-8", "request body: failed to decode request body: unexpected EOF",
			"RequestStage", "request body: failed to decode request body: unexpected EOF"},
		{"refused path parameter", http.MethodGet, "/rpc/v2/stage/abc", "", http.StatusInternalServerError,
			"text/plain; charset=UTF-8", "path parameter stageId: value abc: an invalid integer: invalid syntax",
			"GetStageDetails", "path parameter stageId: value abc: an invalid integer: invalid syntax"},
		{"refused card", http.MethodPost, "/rpc/v2/step/1/card", `{"schema":1}`, http.StatusBadRequest,
			"application/json", `{"message":"request body: field schema: value must be a string"}` + "\n",
			"UploadCard", "request body: field schema: value must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			book := newLogBook()
			s, err := NewDrone(DroneOptions{Secret: "s", Logger: slog.New(book), PollTimeout: time.Millisecond,
				Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }})
			require.NoError(t, err)
			_, err = s.QueueBuild(NewBuild{Yaml: "kind: pipeline\ntype: exec\nname: default\n", Stages: []NewStage{{Name: "default", Type: "exec"}}})
			require.NoError(t, err)
			book.reset()

			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("X-Drone-Token", "s")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code)
			want := noCacheHeaders()
			if tt.contentType != "" {
				want.Set("Content-Type", tt.contentType)
			}
			require.Equal(t, want, rec.Header())
			require.Equal(t, tt.answer, rec.Body.String())

			var wantLogs []logged
			if tt.refused != "" {
				wantLogs = []logged{{level: slog.LevelInfo, msg: "Drone RPC request refused", keys: []string{"operation", "reason"},
					attrs: map[string]string{"operation": tt.refused, "reason": tt.reason}}}
			}
			require.Equal(t, wantLogs, book.contract())
		})
	}
}

// teapot is an answer to Ping that the Drone contract does not list.
type teapot struct{}

func (teapot) VisitPingResponse(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusTeapot)
	return nil
}

// brokenDroneRPC answers Ping outside the contract.
type brokenDroneRPC struct{ droneRPC }

func (brokenDroneRPC) Ping(context.Context, droneapi.PingRequestObject) (droneapi.PingResponseObject, error) {
	return teapot{}, nil
}

// An answer of the mock that violates the Drone contract never reaches the runner: it becomes a
// plain-text 500 that starts with invalidResponsePrefix and carries none of the headers of an
// answer, and it is logged as an error.
func TestDroneRPCInvalidAnswerBecomes500(t *testing.T) {
	t.Parallel()
	book := newLogBook()
	s, err := NewDrone(DroneOptions{Secret: "s", Logger: slog.New(book)})
	require.NoError(t, err)
	h, err := s.newHandler(brokenDroneRPC{droneRPC{s}})
	require.NoError(t, err)

	req := httptest.NewRequest(http.MethodPost, "/rpc/v2/ping", nil)
	req.Header.Set("X-Drone-Token", "s")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, http.Header{"Content-Type": {"text/plain; charset=UTF-8"}}, rec.Header())
	require.True(t, strings.HasPrefix(rec.Body.String(), invalidResponsePrefix+" 418: "), rec.Body.String())
	require.Contains(t, rec.Body.String(), "418")

	logs := book.contract()
	require.Len(t, logs, 1)
	require.Equal(t, slog.LevelError, logs[0].level)
	require.Equal(t, "Drone RPC response violates the contract", logs[0].msg)
	require.Equal(t, []string{"operation", "status", "error"}, logs[0].keys)
	require.Equal(t, "Ping", logs[0].attrs["operation"])
	require.Equal(t, "418", logs[0].attrs["status"])
	require.Equal(t, strings.TrimPrefix(rec.Body.String(), invalidResponsePrefix+" 418: "), logs[0].attrs["error"])
}

// TestHarnessAnswers pins the Harness contracts on the wire: answers keep their Content-Type and
// get no headers of their own; a refused request gets the API's error body with the status its
// failure calls for, logged at info with the API, the operation, the status and the reason.
func TestHarnessAnswers(t *testing.T) {
	t.Parallel()
	const noToken = "no token: send it in the X-Harness-Token header (or query parameter) or the x-api-key header"
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		answer                         string
		api, refused                   string // the API and operation of a refused request; "" when none is refused
		reason                         string
	}{
		{"manager answer", http.MethodPost, "/api/agent/delegates/heartbeat-with-polling?accountId=acct", "Delegate tok", `{}`,
			http.StatusOK, `{"metaData":{},"resource":null,"responseMessages":[]}` + "\n", "", "", ""},
		{"admin answer", http.MethodGet, "/admin/faults", "", "", http.StatusOK, "{}\n", "", "", ""},
		{"manager without a token", http.MethodPost, "/api/agent/delegates/heartbeat-with-polling?accountId=acct", "", `{}`,
			http.StatusUnauthorized, `{"code":"unauthorized","message":"missing Authorization header"}` + "\n",
			"manager", "Heartbeat", "missing Authorization header"},
		{"manager without its account", http.MethodPost, "/api/agent/delegates/heartbeat-with-polling", "Delegate tok", `{}`,
			http.StatusBadRequest, `{"code":"invalid_request","message":"query parameter accountId: value is required but missing"}` + "\n",
			"manager", "Heartbeat", "query parameter accountId: value is required but missing"},
		{"admin with a bad body", http.MethodPut, "/admin/faults", "", `{"errorRate":7}`,
			http.StatusBadRequest, `{"code":"invalid_request","message":"request body: field errorRate: number must be at most 1"}` + "\n",
			"admin", "SetFaults", "request body: field errorRate: number must be at most 1"},
		{"log service without a token", http.MethodPost, LogServicePath + "/blob/link/upload?accountID=acct&key=k", "", "",
			http.StatusBadRequest, `{"error_msg":"` + noToken + `"}` + "\n", "log service", "UploadLink", noToken},
		{"streaming operation without a token", http.MethodGet, LogServicePath + "/stream?accountID=acct&key=k", "", "",
			http.StatusBadRequest, `{"error_msg":"` + noToken + `"}` + "\n", "log service", "TailStream", noToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			book := newLogBook()
			s, err := New(Options{AccountID: "acct", Tokens: []string{"tok"}, Logger: slog.New(book)})
			require.NoError(t, err)

			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code)
			require.Equal(t, http.Header{"Content-Type": {"application/json"}}, rec.Header())
			require.Equal(t, tt.answer, rec.Body.String())

			var wantLogs []logged
			if tt.refused != "" {
				wantLogs = []logged{{level: slog.LevelInfo, msg: "request refused", keys: []string{"api", "operation", "status", "reason"},
					attrs: map[string]string{"api": tt.api, "operation": tt.refused, "status": strconv.Itoa(tt.status), "reason": tt.reason}}}
			}
			require.Equal(t, wantLogs, book.contract())
		})
	}
}
