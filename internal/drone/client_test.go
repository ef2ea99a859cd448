package drone_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/syncbuf"
	"github.com/dlite-dev/dlite/mockmanager"
)

const pipeline = "kind: pipeline\ntype: exec\nname: default\nsteps:\n- name: greet\n  commands: [echo hi]\n"

func newClient(t *testing.T, endpoint, secret string) *drone.Client {
	t.Helper()
	c, err := drone.New(drone.Options{Endpoint: endpoint, Secret: secret})
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func queue(t *testing.T, ds *mockmanager.DroneTestServer, stages ...mockmanager.NewStage) mockmanager.BuildState {
	t.Helper()
	if len(stages) == 0 {
		stages = []mockmanager.NewStage{{Name: "default", Type: "exec"}}
	}
	b, err := ds.QueueBuild(mockmanager.NewBuild{
		Yaml:    pipeline,
		Secrets: []mockmanager.NewSecret{{Name: "token", Data: "s3cr3t"}},
		Stages:  stages,
	})
	require.NoError(t, err)
	return b
}

// TestClientRunsAStage walks one stage through every call a runner makes, against the mock
// server, and checks what the server stored.
func TestClientRunsAStage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	c := newClient(t, ds.URL, ds.Secret())
	b := queue(t, ds)

	require.NoError(t, c.Ping(ctx))
	offered, ok, err := c.Request(ctx, drone.Filter{Kind: "pipeline", Type: "exec", Os: "linux", Arch: "amd64"})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, b.Stages[0].Stage.Id, offered.Id)

	accepted, err := c.Accept(ctx, offered.Id, "runner-1")
	require.NoError(t, err)
	require.Equal(t, "runner-1", accepted.Machine)
	require.Equal(t, offered.Version+1, accepted.Version)

	d, err := c.Detail(ctx, accepted.Id)
	require.NoError(t, err)
	require.Equal(t, pipeline, string(d.Config.Data), "config.Data arrives base64-decoded")
	require.Nil(t, d.Config.Hash)
	require.Equal(t, []drone.Secret{{Id: d.Secrets[0].Id, RepoId: d.Repository.Id, Name: "token", Data: "s3cr3t"}}, d.Secrets)
	require.Equal(t, b.Build.Id, d.Build.Id)

	accepted.Status, accepted.Started = gen.StatusRunning, time.Now().Unix()
	accepted.Steps = []drone.Step{{Number: 1, Name: "greet", StepId: accepted.Id, Status: gen.StatusPending}}
	running, err := c.UpdateStage(ctx, accepted)
	require.NoError(t, err)
	require.Len(t, running.Steps, 1)
	step := running.Steps[0]
	require.NotZero(t, step.Id)
	require.Equal(t, int64(1), step.Version)

	step.Status, step.Started = gen.StatusRunning, time.Now().Unix()
	step, err = c.UpdateStep(ctx, step)
	require.NoError(t, err)
	require.NoError(t, c.Batch(ctx, step.Id, []drone.Line{{Pos: 0, Out: "hi\n", Time: 0}}))
	require.NoError(t, c.Upload(ctx, step.Id, []drone.Line{{Pos: 0, Out: "hi\n", Time: 0}}))
	require.NoError(t, c.UploadCard(ctx, step.Id, drone.CardInput{Schema: "https://example.com/card.json", Data: map[string]any{"a": 1.0}}))
	step.Status, step.Stopped = gen.StatusSuccess, time.Now().Unix()
	step, err = c.UpdateStep(ctx, step)
	require.NoError(t, err)

	running.Status, running.Stopped = gen.StatusSuccess, time.Now().Unix()
	running.Steps = []drone.Step{step}
	_, err = c.UpdateStage(ctx, running)
	require.NoError(t, err)

	done, err := ds.WaitBuild(ctx, b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, gen.StatusSuccess, done.Build.Status)
	got := done.Stages[0].Steps[0]
	require.Equal(t, gen.StatusSuccess, got.Step.Status)
	require.Equal(t, []drone.Line{{Pos: 0, Out: "hi\n"}}, got.Lines)
	require.JSONEq(t, `[{"pos":0,"out":"hi\n","time":0}]`, got.Log)
	require.NotNil(t, got.Card)
	require.Equal(t, "https://example.com/card.json", got.Card.Schema)
}

// TestClientAnswersWithoutWork: the long polls ending with 204 are values, not errors.
func TestClientAnswersWithoutWork(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 50 * time.Millisecond})
	c := newClient(t, ds.URL, ds.Secret())

	_, ok, err := c.Request(ctx, drone.Filter{Kind: "pipeline", Type: "exec"})
	require.NoError(t, err)
	require.False(t, ok)

	b := queue(t, ds)
	cancelled, err := c.Watch(ctx, b.Build.Id)
	require.NoError(t, err)
	require.False(t, cancelled)
	require.Equal(t, int64(1), ds.RequestCount("RequestStage", http.StatusNoContent))
	require.Equal(t, int64(1), ds.RequestCount("WatchBuild", http.StatusNoContent))
}

// TestClientStageWithIDZeroIsNoWork: runner-go's rule that a stage with id 0 means "no work".
func TestClientStageWithIDZeroIsNoWork(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"id":0,"build_id":0,"number":0,"name":"","status":"pending","errignore":false,"exit_code":0,"os":"","arch":"","started":0,"stopped":0,"created":0,"updated":0,"version":0,"on_success":false,"on_failure":false}`)
	}))
	t.Cleanup(hs.Close)
	c := newClient(t, hs.URL, "secret")
	_, ok, err := c.Request(t.Context(), drone.Filter{})
	require.NoError(t, err)
	require.False(t, ok)
}

// TestClientWatchSeesCancel: a cancel while the watch is open answers true.
func TestClientWatchSeesCancel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: time.Minute})
	c := newClient(t, ds.URL, ds.Secret())
	b := queue(t, ds)
	result := make(chan bool, 1)
	go func() {
		cancelled, err := c.Watch(ctx, b.Build.Id)
		if err != nil {
			t.Error(err)
		}
		result <- cancelled
	}()
	require.Eventually(t, func() bool {
		return ds.Watching(b.Build.Id) == 1
	}, 10*time.Second, 5*time.Millisecond)
	_, err := ds.CancelBuild(b.Build.Id)
	require.NoError(t, err)
	require.True(t, <-result)
}

// TestClientDecodesJSONWithoutContentType: Drone servers send JSON without a Content-Type (Go
// then labels it text/plain). The generated decoder alone would drop such a body; the client
// still decodes it.
func TestClientDecodesJSONWithoutContentType(t *testing.T) {
	t.Parallel()
	body := `{"id":7,"build_id":3,"number":1,"name":"default","status":"pending","errignore":false,"exit_code":0,"os":"linux","arch":"amd64","started":0,"stopped":0,"created":1,"updated":1,"version":2,"on_success":true,"on_failure":false}`
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body) // no Content-Type: net/http sniffs one
	}))
	t.Cleanup(hs.Close)

	raw, err := gen.NewClientWithResponses(hs.URL)
	require.NoError(t, err)
	res, err := raw.AcceptStageWithResponse(t.Context(), 7, &gen.AcceptStageParams{})
	require.NoError(t, err)
	require.Equal(t, "text/plain; charset=utf-8", res.HTTPResponse.Header.Get("Content-Type"))
	require.Nil(t, res.JSON200, "the generated decoder skips a body not labelled JSON")

	st, err := newClient(t, hs.URL, "secret").Accept(t.Context(), 7, "m")
	require.NoError(t, err)
	require.Equal(t, int64(7), st.Id)
	require.Equal(t, int64(2), st.Version)
}

// TestClientMapsStatuses: every answer a Drone server (or a proxy before it) gives maps to one
// error kind, decided once.
func TestClientMapsStatuses(t *testing.T) {
	t.Parallel()
	const secret = "the-rpc-secret"
	tests := []struct {
		name      string
		status    int
		body      string
		code      errs.Code
		is        error
		retryable bool
		text      string
	}{
		{"conflict", http.StatusConflict, "Optimistic Lock Error", errs.CodeAcquireConflict, drone.ErrOptimisticLock, false, "optimistic lock error"},
		{"unauthorized", http.StatusUnauthorized, "", errs.CodeUnauthorized, errs.ErrUnauthorized, false, "refused the RPC secret (401)"},
		{"forbidden", http.StatusForbidden, "", errs.CodeUnauthorized, errs.ErrUnauthorized, false, "refused the RPC secret (403)"},
		{"not found as 500", http.StatusInternalServerError, "sql: no rows in result set\n", errs.CodeManagerRejected, errs.ErrManagerRejected, false, "answered 500: sql: no rows in result set"},
		{"empty 500", http.StatusInternalServerError, "", errs.CodeManagerRejected, errs.ErrManagerRejected, false, "answered 500: Internal Server Error"},
		{"not implemented", http.StatusNotImplemented, "", errs.CodeManagerRejected, errs.ErrManagerRejected, false, "answered 501"},
		{"bad gateway", http.StatusBadGateway, "upstream gone", errs.CodeManagerUnavailable, errs.ErrManagerUnavailable, true, "answered 502: upstream gone"},
		{"unavailable", http.StatusServiceUnavailable, "", errs.CodeManagerUnavailable, errs.ErrManagerUnavailable, true, "answered 503"},
		{"gateway timeout", http.StatusGatewayTimeout, "", errs.CodeManagerUnavailable, errs.ErrManagerUnavailable, true, "answered 504"},
		{"unknown route", http.StatusNotFound, "404 page not found", errs.CodeNotFound, errs.ErrNotFound, false, "answered 404: 404 page not found"},
		{"redirect", http.StatusFound, "", errs.CodeManagerRejected, errs.ErrManagerRejected, false, "answered 302"},
		{"echoed secret", http.StatusInternalServerError, "bad token " + secret, errs.CodeManagerRejected, errs.ErrManagerRejected, false, "bad token [redacted]"},
		{"not JSON", http.StatusOK, "<html>", errs.CodeMalformedResponse, errs.ErrMalformedResponse, false, "undecodable answer"},
		{"empty 200", http.StatusOK, "", errs.CodeMalformedResponse, errs.ErrMalformedResponse, false, "undecodable answer: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.Header.Get("X-Drone-Token") != secret {
					t.Errorf("X-Drone-Token = %q", r.Header.Get("X-Drone-Token"))
				}
				if tt.status == http.StatusFound {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(hs.Close)
			_, err := newClient(t, hs.URL, secret).Detail(t.Context(), 5)
			require.Error(t, err)
			require.Equal(t, tt.code, errs.CodeOf(err))
			require.ErrorIs(t, err, tt.is)
			require.Equal(t, tt.retryable, errs.Retryable(err))
			require.Contains(t, err.Error(), tt.text)
			require.Contains(t, err.Error(), "read details of stage 5")
			require.NotContains(t, err.Error(), secret)
			require.Equal(t, int32(1), calls.Load(), "one call is one attempt: retrying is the caller's choice")
		})
	}
}

// TestClientTransportFailureIsRetryable: a server that cannot be reached may be back later.
func TestClientTransportFailureIsRetryable(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close()
	err := newClient(t, url, "secret").Ping(t.Context())
	require.Error(t, err)
	require.True(t, errs.Retryable(err))
}

// TestClientCallEndsWithItsContext: a call has no timeout of its own; the caller's context
// bounds it, and the error says the call was abandoned.
func TestClientCallEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: time.Minute})
	c := newClient(t, ds.URL, ds.Secret())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, _, err := c.Request(ctx, drone.Filter{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "call abandoned")
}

// TestClientConflicts: a stage accepted twice, and a stale version, are lock conflicts.
func TestClientConflicts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	c := newClient(t, ds.URL, ds.Secret())
	b := queue(t, ds)
	id := b.Stages[0].Stage.Id
	st, err := c.Accept(ctx, id, "a")
	require.NoError(t, err)
	_, err = c.Accept(ctx, id, "b")
	require.ErrorIs(t, err, drone.ErrOptimisticLock)

	st.Status, st.Version = gen.StatusRunning, st.Version-1
	_, err = c.UpdateStage(ctx, st)
	require.ErrorIs(t, err, drone.ErrOptimisticLock)
	require.Equal(t, errs.CodeAcquireConflict, errs.CodeOf(err))
}

// TestClientWrongSecret: the refusal is a permanent error that says the secret was refused.
func TestClientWrongSecret(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	err := newClient(t, ds.URL, "not-the-secret").Ping(t.Context())
	require.ErrorIs(t, err, errs.ErrUnauthorized)
	require.False(t, errs.Retryable(err))
	require.Contains(t, err.Error(), "refused the RPC secret")
}

// TestClientCardsUnsupported: a server older than cards answers 404 for the route.
func TestClientCardsUnsupported(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hs.Close)
	err := newClient(t, hs.URL, "s").UploadCard(t.Context(), 1, drone.CardInput{Schema: "x"})
	require.ErrorIs(t, err, drone.ErrCardsUnsupported)
	require.ErrorIs(t, err, errs.ErrNotFound)
}

// TestClientNeverLogsTheSecret: nothing the client logs carries the secret.
func TestClientNeverLogsTheSecret(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	c, err := drone.New(drone.Options{Endpoint: "https://127.0.0.1:1", Secret: "top-secret-value", InsecureSkipVerify: true,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	err = c.Ping(t.Context())
	require.Error(t, err)
	require.NotContains(t, err.Error(), "top-secret-value")
	require.Contains(t, logs.String(), "verification")
	require.NotContains(t, logs.String(), "top-secret-value")
}

func TestNewRefusesBadSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts drone.Options
		want string
	}{
		{"no endpoint", drone.Options{Secret: "s"}, "DRONE_RPC_HOST"},
		{"bad scheme", drone.Options{Endpoint: "ftp://x", Secret: "s"}, "DRONE_RPC_PROTO"},
		{"no host", drone.Options{Endpoint: "http://", Secret: "s"}, "no host"},
		{"no secret", drone.Options{Endpoint: "http://x"}, "DRONE_RPC_SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := drone.New(tt.opts)
			require.ErrorIs(t, err, errs.ErrInvalidConfig)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}
