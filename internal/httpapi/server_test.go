package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/executor"
	"github.com/dlite-dev/dlite/internal/httpapi"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/runner"
	"github.com/dlite-dev/dlite/internal/session"
	"github.com/dlite-dev/dlite/internal/telemetry"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a status endpoint over telemetry fed by the runtime's observer hooks, with the
// runtime's reads under the test's control.
type fixture struct {
	rec   *telemetry.Recorder
	mon   *telemetry.Monitor
	mu    sync.Mutex
	phase runner.Phase
	state session.State
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		phase: runner.PhaseRunning,
		state: session.State{DelegateID: "delegate-7", Status: manager.StatusEnabled, LastHeartbeat: t0, Registrations: 1},
	}
	f.rec = telemetry.NewRecorder(telemetry.RecorderOptions{TaskTypes: []string{"SLEEP_TASK"}})
	mon, err := telemetry.NewMonitor(telemetry.MonitorOptions{
		Recorder: f.rec,
		Sources: telemetry.Sources{
			Phase: func() runner.Phase {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.phase
			},
			Session: func() session.State {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.state
			},
			Slots: func() (int, int) { return 1, 4 },
		},
		Name:              "runner-a",
		TaskTypes:         []string{"SLEEP_TASK"},
		HeartbeatInterval: 10 * time.Second,
		Now:               func() time.Time { return t0.Add(5 * time.Second) },
	})
	require.NoError(t, err)
	f.mon = mon
	return f
}

func (f *fixture) set(phase runner.Phase, st session.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phase, f.state = phase, st
}

func (f *fixture) server(t *testing.T, addr, user, password string) *httpapi.Server {
	t.Helper()
	s, err := httpapi.New(httpapi.Options{Addr: addr, Username: user, Password: password, Status: f.mon, Metrics: f.mon.Gatherer()})
	require.NoError(t, err)
	return s
}

type response struct {
	code   int
	header http.Header
	body   string
}

func get(t *testing.T, h http.Handler, path string, auth ...string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.set(runner.PhaseRegistering, session.State{})
	r := get(t, f.server(t, "127.0.0.1:0", "", "").Handler(), "/healthz")
	require.Equal(t, http.StatusOK, r.code, "alive even while not ready")
	require.Equal(t, "ok\n", r.body)
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		phase runner.Phase
		state session.State
		code  int
		body  string
	}{
		{"ready", runner.PhaseRunning, session.State{DelegateID: "d", Status: manager.StatusEnabled, LastHeartbeat: t0}, 200, "ready\n"},
		{"not registered", runner.PhaseRegistering, session.State{}, 503, "not ready: not registered with the manager yet\n"},
		{"stale heartbeat", runner.PhaseRunning, session.State{DelegateID: "d", Status: manager.StatusEnabled, LastHeartbeat: t0.Add(-time.Minute)},
			503, "not ready: no heartbeat answered for 1m5s (more than 30s)\n"},
		{"draining", runner.PhaseDraining, session.State{DelegateID: "d", Status: manager.StatusEnabled, LastHeartbeat: t0},
			503, "not ready: draining: taking no new work, letting running tasks finish\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.set(tc.phase, tc.state)
			// Probes are open even when the rest of the endpoint needs credentials.
			r := get(t, f.server(t, "0.0.0.0:0", "admin", "s3cret").Handler(), "/readyz")
			require.Equal(t, tc.code, r.code)
			require.Equal(t, tc.body, r.body)
			require.Contains(t, r.header.Get("Content-Type"), "text/plain")
		})
	}
}

func TestMetricsAfterObservedTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	task := executor.RunningTask{ID: "t1", Type: "SLEEP_TASK", StartedAt: t0}
	f.rec.TaskStarted(task)
	f.rec.TaskFinished(task, manager.Result{Code: manager.CodeOK, FinishedAt: t0.Add(time.Second)}, time.Second)
	f.rec.Polled(1, nil)

	r := get(t, f.server(t, "127.0.0.1:0", "", "").Handler(), "/metrics")
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.header.Get("Content-Type"), "text/plain")
	for _, line := range []string{
		`dlite_tasks_started_total{type="SLEEP_TASK"} 1`,
		`dlite_tasks_finished_total{code="OK",type="SLEEP_TASK"} 1`,
		`dlite_tasks_running{type="SLEEP_TASK"} 0`,
		`dlite_polls_total{outcome="events"} 1`,
		`dlite_slots 4`,
		`dlite_slots_free 3`,
		`dlite_ready 1`,
	} {
		require.Contains(t, r.body, line+"\n")
	}
	require.Contains(t, r.body, "go_goroutines ")
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	done := executor.RunningTask{ID: "t-done", Type: "SLEEP_TASK", StartedAt: t0}
	f.rec.TaskStarted(done)
	f.rec.TaskFinished(done, manager.Result{Code: manager.CodeFailed, Error: "<script>alert(1)</script>", FinishedAt: t0.Add(2 * time.Second)}, 2*time.Second)
	f.rec.TaskStarted(executor.RunningTask{ID: "t-run", Type: "SLEEP_TASK", StartedAt: t0.Add(time.Second)})

	r := get(t, f.server(t, "127.0.0.1:0", "", "").Handler(), "/status.json")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
	var snap telemetry.Snapshot
	require.NoError(t, json.Unmarshal([]byte(r.body), &snap))
	require.Equal(t, "runner-a", snap.Name)
	require.Equal(t, "delegate-7", snap.DelegateID)
	require.True(t, snap.Ready)
	require.Equal(t, telemetry.Slots{InUse: 1, Total: 4}, snap.Slots)
	require.Equal(t, []telemetry.TaskStatus{{ID: "t-run", Type: "SLEEP_TASK", StartedAt: t0.Add(time.Second), Seconds: 4}}, snap.Running)
	require.Len(t, snap.Finished, 1)
	require.Equal(t, manager.CodeFailed, snap.Finished[0].Code)
	require.Equal(t, "<script>alert(1)</script>", snap.Finished[0].Error, "carried as data; the page sets it as text")
	require.Equal(t, 2.0, snap.Finished[0].Seconds)
}

func TestStatusPageIsSelfContained(t *testing.T) {
	t.Parallel()
	h := newFixture(t).server(t, "127.0.0.1:0", "", "").Handler()
	page := get(t, h, "/")
	require.Equal(t, http.StatusOK, page.code)
	require.Equal(t, "text/html; charset=UTF-8", page.header.Get("Content-Type"))
	csp := page.header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "script-src 'self'")
	require.Equal(t, "DENY", page.header.Get("X-Frame-Options"))

	// Every file the page refers to is served here: no CDN, no other origin.
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page.body, -1)
	require.NotEmpty(t, refs)
	for _, ref := range refs {
		target := ref[1]
		if target == "data:," {
			continue
		}
		require.NotContains(t, target, "//", "an outside reference: %s", target)
		r := get(t, h, "/"+target)
		require.Equal(t, http.StatusOK, r.code, target)
		require.NotEmpty(t, r.body, target)
	}
	js := get(t, h, "/app.js")
	require.Contains(t, js.header.Get("Content-Type"), "javascript")
	require.Contains(t, js.body, "'status.json'", "the page polls the snapshot relative to where it is served")
	require.NotContains(t, js.body, "innerHTML", "task data is only ever set as text")
	require.Contains(t, get(t, h, "/style.css").header.Get("Content-Type"), "text/css")
	require.Equal(t, http.StatusNotFound, get(t, h, "/nothing-here").code)
}

func TestCredentialsGuardEverythingButProbes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, addr := range []string{"0.0.0.0:3000", ":3000", "127.0.0.1:3000"} {
		h := f.server(t, addr, "operator", "correct horse").Handler()
		for _, path := range []string{"/", "/status.json", "/metrics", "/app.js", "/style.css"} {
			r := get(t, h, path)
			require.Equal(t, http.StatusUnauthorized, r.code, "%s %s without credentials", addr, path)
			require.Equal(t, `basic realm="dlite"`, r.header.Get("WWW-Authenticate"))
			require.Equal(t, http.StatusUnauthorized, get(t, h, path, "operator", "wrong").code, path)
			require.Equal(t, http.StatusUnauthorized, get(t, h, path, "someone", "correct horse").code, path)
			require.Equal(t, http.StatusUnauthorized, get(t, h, path, "operator", "correct horse2").code, path)
			require.Equal(t, http.StatusOK, get(t, h, path, "operator", "correct horse").code, path)
		}
		require.Equal(t, http.StatusOK, get(t, h, "/healthz").code)
		require.Equal(t, http.StatusOK, get(t, h, "/readyz").code)
	}
}

func TestNewRefusesAnOpenEndpointOffLoopback(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	opts := func(addr, user, password string) httpapi.Options {
		return httpapi.Options{Addr: addr, Username: user, Password: password, Status: f.mon, Metrics: f.mon.Gatherer()}
	}
	for _, addr := range []string{"0.0.0.0:3000", ":3000", "[::]:3000", "10.1.2.3:3000", "runner.example:3000"} {
		_, err := httpapi.New(opts(addr, "", ""))
		require.ErrorContains(t, err, "credentials are required", addr)
	}
	_, err := httpapi.New(opts("127.0.0.1:3000", "user", ""))
	require.ErrorContains(t, err, "both")
	_, err = httpapi.New(opts("3000", "", ""))
	require.ErrorContains(t, err, "listen address")
	_, err = httpapi.New(httpapi.Options{Addr: "127.0.0.1:0"})
	require.ErrorContains(t, err, "required")
	for _, addr := range []string{"127.0.0.1:3000", "localhost:3000", "[::1]:3000", "127.0.0.2:0"} {
		_, err := httpapi.New(opts(addr, "", ""))
		require.NoError(t, err, addr)
	}
}

func TestServesUntilShutdown(t *testing.T) {
	t.Parallel()
	s := newFixture(t).server(t, "127.0.0.1:0", "", "")
	require.Nil(t, s.Addr())
	require.Error(t, s.Serve(), "Serve before Listen")
	require.NoError(t, s.Listen())
	addr := s.Addr().String()

	// The address is held from Listen on: a second server cannot take it.
	other, err := httpapi.New(httpapi.Options{Addr: addr, Status: newFixture(t).mon, Metrics: newFixture(t).mon.Gatherer()})
	require.NoError(t, err)
	require.ErrorContains(t, other.Listen(), "status endpoint")

	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	res, err := client.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, "ok\n", string(body))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	require.NoError(t, <-served)
	require.NoError(t, s.Close())
}

func TestCloseReleasesAnAddressNeverServed(t *testing.T) {
	t.Parallel()
	s := newFixture(t).server(t, "127.0.0.1:0", "", "")
	require.NoError(t, s.Listen())
	addr := s.Addr().String()
	require.NoError(t, s.Close())
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the port is free again")
	require.NoError(t, ln.Close())
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "localhost": true, "LOCALHOST": true,
		"": false, "0.0.0.0": false, "::": false, "192.168.1.2": false, "example.com": false,
	} {
		require.Equal(t, want, httpapi.IsLoopback(host), host)
	}
}

// The checks below keep the page's markup and script in step: every id the script writes exists.
func TestPageHasEveryElementTheScriptWrites(t *testing.T) {
	t.Parallel()
	h := newFixture(t).server(t, "127.0.0.1:0", "", "").Handler()
	page, js := get(t, h, "/").body, get(t, h, "/app.js").body
	var ids []string
	for _, m := range regexp.MustCompile(`(?:setText|el)\('([a-z-]+)'`).FindAllStringSubmatch(js, -1) {
		ids = append(ids, m[1])
	}
	for _, m := range regexp.MustCompile(`fill\('([a-z-]+)', '([a-z-]+)'`).FindAllStringSubmatch(js, -1) {
		ids = append(ids, m[1], m[2])
	}
	require.Greater(t, len(ids), 15)
	for _, id := range ids {
		require.True(t, strings.Contains(page, `id="`+id+`"`), "app.js writes #%s, which index.html lacks", id)
	}
}

// stageList is a stage engine's listing, as the status page reads it.
type stageList struct {
	stages []*engine.Stage
	err    error
}

func (l stageList) Stages(context.Context) ([]*engine.Stage, error) { return l.stages, l.err }

func TestStatusJSONListsStagesInProgress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	later := &engine.Stage{Spec: engine.StageSpec{ID: "stage-b"}, State: engine.StageReady, Created: t0.Add(time.Minute)}
	first := &engine.Stage{Spec: engine.StageSpec{ID: "stage-a"}, State: engine.StageReady, Created: t0,
		Steps: map[string]*engine.StepRecord{
			"two": {ID: "two", Name: "Test", Backend: "docker", Started: t0.Add(2 * time.Second)},
			"one": {ID: "one", Name: "Build", Backend: "host", Started: t0.Add(time.Second),
				Result: &engine.StepResult{Status: engine.StepFailure, Error: "exit status 2"}},
		}}
	s, err := httpapi.New(httpapi.Options{Addr: "127.0.0.1:0", Status: f.mon, Metrics: f.mon.Gatherer(),
		Stages: stageList{stages: []*engine.Stage{later, first}}})
	require.NoError(t, err)

	r := get(t, s.Handler(), "/status.json")
	require.Equal(t, http.StatusOK, r.code)
	var body struct {
		Name   string              `json:"name"`
		Stages []httpapi.StageView `json:"stages"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &body))
	require.Equal(t, "runner-a", body.Name, "the runner's snapshot is still there")
	require.Equal(t, []httpapi.StageView{
		{ID: "stage-a", State: "ready", Created: t0, Steps: []httpapi.StepView{
			{ID: "one", Name: "Build", Backend: "host", Started: t0.Add(time.Second), Status: "failure", Error: "exit status 2"},
			{ID: "two", Name: "Test", Backend: "docker", Started: t0.Add(2 * time.Second), Status: "running"},
		}},
		{ID: "stage-b", State: "ready", Created: t0.Add(time.Minute), Steps: []httpapi.StepView{}},
	}, body.Stages)

	s, err = httpapi.New(httpapi.Options{Addr: "127.0.0.1:0", Status: f.mon, Metrics: f.mon.Gatherer(),
		Stages: stageList{err: errors.New("read stage records: permission denied")}})
	require.NoError(t, err)
	r = get(t, s.Handler(), "/status.json")
	require.Contains(t, r.body, `"stagesError":"read stage records: permission denied"`)
	require.Contains(t, r.body, `"stages":[]`)
}
