package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

// waitFor bounds every wait; it only keeps a broken runner from hanging the test run.
const waitFor = 60 * time.Second

// running is a runner under test.
type running struct {
	R    *dlite.Runner
	Logs *logRecorder
	// Done receives Run's error once Run returns.
	Done chan error
	stop context.CancelFunc
}

// setup says how to build a runner under test.
type setup struct {
	// Endpoint is the manager URL; the mock manager's when empty (set it to a proxy's URL).
	Endpoint string
	// Env overrides the test defaults of the DLITE_ settings.
	Env map[string]string
	// Legacy are legacy handlers, next to the built-in task types.
	Legacy map[string]http.Handler
}

// start builds a runner with dlite.New, the built-in tasks and s's legacy handlers, runs it, and
// stops it (hard) when the test ends if the test has not stopped it.
func start(t *testing.T, mm *mockmanager.TestServer, s setup) *running {
	t.Helper()
	endpoint := s.Endpoint
	if endpoint == "" {
		endpoint = mm.URL
	}
	vars := map[string]string{
		"DLITE_MANAGER_ENDPOINT":        endpoint,
		"DLITE_ACCOUNT_ID":              mm.AccountID(),
		"DLITE_ACCOUNT_SECRET":          mm.AccountSecret(),
		"DLITE_NAME":                    "e2e-runner",
		"DLITE_SPOOL_DIR":               t.TempDir(),
		"DLITE_PARALLEL_WORKERS":        "4",
		"DLITE_POLL_INTERVAL_MILLISECS": "20",
		"DLITE_HEARTBEAT_INTERVAL":      "1s",
		"DLITE_HTTP_ADDR":               "off",
		"DLITE_LOG_LEVEL":               "debug",
	}
	maps.Copy(vars, s.Env)
	cfg, err := dlite.LoadConfig(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, io.Discard)
	require.NoError(t, err)

	logs := newLogRecorder(t)
	r, err := dlite.New(dlite.Options{
		Config:         cfg,
		TaskServers:    []dlite.TaskServer{dlite.BuiltinTasks()},
		LegacyHandlers: s.Legacy,
		Logger:         slog.New(logs),
	})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	rt := &running{R: r, Logs: logs, Done: make(chan error, 1), stop: cancel}
	go func() { rt.Done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-rt.Done:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("the runner did not stop")
		}
		logs.close()
	})
	return rt
}

// waitStopped waits for Run to return and returns its error.
func (rt *running) waitStopped(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rt.Done:
		rt.Done <- err // the cleanup reads it again
		return err
	case <-time.After(waitFor):
		t.Fatal("the runner did not stop")
		return nil
	}
}

func newMock(t *testing.T, opts mockmanager.Options) *mockmanager.TestServer {
	t.Helper()
	if opts.Logger == nil {
		out := &testWriter{t: t}
		t.Cleanup(out.close) // runs after the mock manager's own cleanup has stopped it
		opts.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return mockmanager.NewTest(t, opts)
}

// enqueue queues a task and returns its id.
func enqueue(t *testing.T, mm *mockmanager.TestServer, nt mockmanager.NewTask) string {
	t.Helper()
	id, err := mm.Enqueue(nt)
	require.NoError(t, err)
	return id
}

// task builds a NewTask of the given type and data; timeout in seconds, 0 for none.
func task(typ string, data any, timeout int64, runnerResponse bool) mockmanager.NewTask {
	nt := mockmanager.NewTask{Type: typ, RunnerResponse: &runnerResponse}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			panic(err)
		}
		raw := json.RawMessage(b)
		nt.Data = &raw
	}
	if timeout > 0 {
		nt.Timeout = &timeout
	}
	return nt
}

func sleepTask(ms int) mockmanager.NewTask {
	return task("SLEEP_TASK", map[string]any{"milliseconds": ms}, 60, false)
}

// answered waits until the task has an answer and returns its status.
func answered(t *testing.T, mm *mockmanager.TestServer, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	st, err := mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return len(st.Responses) > 0 })
	require.NoError(t, err)
	return st
}

// acquired waits until a runner has acquired the task.
func acquired(t *testing.T, mm *mockmanager.TestServer, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	st, err := mm.WaitTask(ctx, id, func(st mockmanager.TaskStatus) bool { return st.Acquisitions > 0 })
	require.NoError(t, err)
	return st
}

// delegates waits until at least n delegates registered and the last one has sent a heartbeat,
// and returns them all.
func delegates(t *testing.T, mm *mockmanager.TestServer, n int) []mockmanager.Delegate {
	t.Helper()
	var ds []mockmanager.Delegate
	require.Eventually(t, func() bool {
		ds = mm.Delegates()
		return len(ds) >= n && ds[n-1].LastHeartbeat != nil
	}, waitFor, 5*time.Millisecond)
	return ds
}

// errorText is the error a task's (only) answer carries.
func errorText(r mockmanager.RecordedResponse) string {
	if r.Error == nil {
		return ""
	}
	return *r.Error
}

// dataObject decodes an answer's data, which must be a JSON object.
func dataObject(t *testing.T, r mockmanager.RecordedResponse) map[string]any {
	t.Helper()
	require.NotNil(t, r.Data, "the answer carries data")
	var m map[string]any
	require.NoError(t, json.Unmarshal(*r.Data, &m), "data is a JSON object: %s", *r.Data)
	require.NotNil(t, m, "data is a JSON object, not null")
	return m
}

// processGone reports whether pid has exited: it no longer exists, or is a zombie waiting for a
// parent (here, possibly an init that does not reap) to collect its status.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	fields := strings.Fields(string(rest))
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

// testWriter writes to the test's output until the test ends, then drops what comes late.
type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// record is one log record, its attributes flattened to text.
type record struct {
	Message string
	Attrs   map[string]string
}

// logRecorder is the runner's slog.Handler: it keeps every record for the test to look at and
// writes it to the test's output.
type logRecorder struct {
	out     *testWriter
	text    slog.Handler
	mu      *sync.Mutex
	records *[]record
	attrs   []slog.Attr
	changed *chan struct{}
}

func newLogRecorder(t *testing.T) *logRecorder {
	out := &testWriter{t: t}
	changed := make(chan struct{})
	return &logRecorder{
		out:     out,
		text:    slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		mu:      &sync.Mutex{},
		records: &[]record{},
		changed: &changed,
	}
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	rec := record{Message: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	*l.records = append(*l.records, rec)
	close(*l.changed)
	*l.changed = make(chan struct{})
	l.mu.Unlock()
	return l.text.Handle(ctx, r)
}

func (l *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(append([]slog.Attr(nil), l.attrs...), attrs...)
	c.text = l.text.WithAttrs(attrs)
	return &c
}

func (l *logRecorder) WithGroup(name string) slog.Handler {
	c := *l
	c.text = l.text.WithGroup(name)
	return &c
}

func (l *logRecorder) close() { l.out.close() }

// find returns the first record whose message contains msg and whose attributes hold every
// key=value pair given.
func (l *logRecorder) find(msg string, kv ...string) (record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range *l.records {
		if !strings.Contains(r.Message, msg) {
			continue
		}
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if r.Attrs[kv[i]] != kv[i+1] {
				match = false
			}
		}
		if match {
			return r, true
		}
	}
	return record{}, false
}

// wait waits until a record like find describes is logged.
func (l *logRecorder) wait(t *testing.T, msg string, kv ...string) record {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		l.mu.Lock()
		changed := *l.changed
		l.mu.Unlock()
		if r, ok := l.find(msg, kv...); ok {
			return r
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log record %q %v", msg, kv)
		}
	}
}

// call is a request the proxy sees: its kind, the task it is about (for acquires and status
// posts) and how many calls of that kind for that task came before it, plus one.
type call struct {
	Kind   string
	TaskID string
	N      int
}

// The kinds of manager calls the proxy tells apart.
const (
	kindRegister  = "register"
	kindHeartbeat = "heartbeat"
	kindPoll      = "poll"
	kindAcquire   = "acquire"
	kindStatus    = "status"
	kindOther     = "other"
)

// proxy stands between a runner and the mock manager. It counts the calls and lets a test refuse
// some with a status of its choice, change the body of a registration, or change a heartbeat's
// answer.
type proxy struct {
	URL string

	mu     sync.Mutex
	counts map[[2]string]int
	// refuse, when set, answers a call with the status it returns instead of passing it on (0
	// passes it on).
	refuse func(c call) int
	// register, when set, edits the body of a registration before it is passed on.
	register func(params map[string]any)
	// heartbeat, when set, edits the manager's answer to a heartbeat.
	heartbeat func(answer map[string]any)
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &proxy{counts: map[[2]string]int{}}
	transport := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			if classify(resp.Request).Kind != kindHeartbeat || resp.StatusCode != http.StatusOK {
				return nil
			}
			p.mu.Lock()
			edit := p.heartbeat
			p.mu.Unlock()
			if edit == nil {
				return nil
			}
			return editJSON(&resp.Body, &resp.ContentLength, resp.Header, edit)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := classify(r)
		p.mu.Lock()
		key := [2]string{c.Kind, c.TaskID}
		p.counts[key]++
		c.N = p.counts[key]
		refuse, register := p.refuse, p.register
		p.mu.Unlock()
		if refuse != nil {
			if status := refuse(c); status != 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"code":"refused","message":"refused by the test proxy with %d"}`, status)
				return
			}
		}
		if c.Kind == kindRegister && register != nil {
			if err := editJSON(&r.Body, &r.ContentLength, r.Header, register); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		transport.CloseIdleConnections()
	})
	p.URL = srv.URL
	return p
}

// set changes the proxy's behaviour under its lock.
func (p *proxy) set(f func(p *proxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// count returns how many calls of a kind about a task (or about no task) the proxy has seen.
func (p *proxy) count(kind, taskID string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[[2]string{kind, taskID}]
}

func classify(r *http.Request) call {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/agent/delegates/register":
		return call{Kind: kindRegister}
	case r.Method == http.MethodPost && r.URL.Path == "/api/agent/delegates/heartbeat-with-polling":
		return call{Kind: kindHeartbeat}
	case r.Method == http.MethodGet && len(parts) == 5 && parts[4] == "task-events":
		return call{Kind: kindPoll}
	case r.Method == http.MethodPut && len(parts) == 8 && parts[7] == "acquire":
		return call{Kind: kindAcquire, TaskID: parts[6]}
	case r.Method == http.MethodPost && len(parts) == 7 && parts[2] == "v2" && parts[3] == "tasks":
		return call{Kind: kindStatus, TaskID: parts[4]}
	case r.Method == http.MethodPost && len(parts) == 4 && parts[1] == "executions" && parts[3] == "response":
		return call{Kind: kindStatus, TaskID: parts[2]}
	}
	return call{Kind: kindOther}
}

// editJSON decodes a JSON body, lets edit change it, and puts it back.
func editJSON(body *io.ReadCloser, length *int64, h http.Header, edit func(map[string]any)) error {
	raw, err := io.ReadAll(*body)
	_ = (*body).Close()
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	edit(m)
	if raw, err = json.Marshal(m); err != nil {
		return err
	}
	*body = io.NopCloser(bytes.NewReader(raw))
	*length = int64(len(raw))
	h.Set("Content-Length", fmt.Sprint(len(raw)))
	return nil
}
