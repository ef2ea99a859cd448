package dlite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/telemetry"
	"github.com/dlite-dev/dlite/mockmanager"
)

// waitFor bounds every wait of these tests; it only keeps a broken test from hanging.
const waitFor = 30 * time.Second

// liveRunner is a runner started against a mock manager, with its status endpoint on a free
// loopback port.
type liveRunner struct {
	*Runner
	// URL is the status endpoint's base URL.
	URL    string
	client *http.Client
	done   chan error
	once   sync.Once
	err    error
}

// startRunner starts a runner of the built-in task types against mm, with settings overriding
// the test defaults (short poll and heartbeat intervals, 4 slots, a spool in t.TempDir, the
// status endpoint on 127.0.0.1:0). It is shut down when the test ends. Logs go to logs in the
// configured format (DLITE_LOG_FORMAT), or, with logs nil, warnings and errors to the test's
// output.
func startRunner(t *testing.T, mm *mockmanager.TestServer, settings map[string]string, logs io.Writer) *liveRunner {
	t.Helper()
	env := map[string]string{
		"DLITE_MANAGER_ENDPOINT":        mm.URL,
		"DLITE_ACCOUNT_ID":              mm.AccountID(),
		"DLITE_ACCOUNT_SECRET":          mm.AccountSecret(),
		"DLITE_NAME":                    "runner-under-test",
		"DLITE_SPOOL_DIR":               t.TempDir(),
		"DLITE_POLL_INTERVAL_MILLISECS": "50",
		"DLITE_HEARTBEAT_INTERVAL":      "1s",
		"DLITE_PARALLEL_WORKERS":        "4",
		"DLITE_HTTP_ADDR":               "127.0.0.1:0",
	}
	maps.Copy(env, settings)
	cfg, err := LoadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if logs != nil {
		logger = cfg.NewLogger(logs)
	}
	r, err := New(Options{Config: cfg, TaskServers: []TaskServer{BuiltinTasks()}, Logger: logger})
	require.NoError(t, err)
	require.NotNil(t, r.rt.HTTP, "the status endpoint is on")

	// An endpoint on every interface is reached here through loopback.
	_, port, err := net.SplitHostPort(r.rt.HTTP.Addr().String())
	require.NoError(t, err)
	lr := &liveRunner{
		Runner: r,
		URL:    "http://" + net.JoinHostPort("127.0.0.1", port),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}},
		done:   make(chan error, 1),
	}
	go func() { lr.done <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = r.Shutdown(ctx)
		require.NoError(t, lr.wait())
		lr.client.CloseIdleConnections()
	})
	return lr
}

// wait waits until Run has returned, and returns its error.
func (lr *liveRunner) wait() error {
	lr.once.Do(func() { lr.err = <-lr.done })
	return lr.err
}

// fetch gets a path of the status endpoint, with basic-auth credentials when given.
func (lr *liveRunner) fetch(path string, auth ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, lr.URL+path, nil)
	if err != nil {
		return 0, "", err
	}
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	res, err := lr.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, string(body), err
}

// get is fetch for the test's own goroutine: a failed request fails the test.
func (lr *liveRunner) get(t *testing.T, path string, auth ...string) (int, string) {
	t.Helper()
	code, body, err := lr.fetch(path, auth...)
	require.NoError(t, err)
	return code, body
}

// eventually waits until path answers code with a body containing want.
func (lr *liveRunner) eventually(t *testing.T, path string, code int, want string, auth ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, body, err := lr.fetch(path, auth...)
		if !assert.NoError(c, err) {
			return
		}
		assert.Equal(c, code, got, body)
		assert.Contains(c, body, want)
	}, waitFor, 20*time.Millisecond)
}

// waitReady waits until /readyz answers 200.
func (lr *liveRunner) waitReady(t *testing.T) {
	t.Helper()
	lr.eventually(t, "/readyz", http.StatusOK, "ready")
}

func (lr *liveRunner) status(t *testing.T) telemetry.Snapshot {
	t.Helper()
	code, body := lr.get(t, "/status.json")
	require.Equal(t, http.StatusOK, code, body)
	var s telemetry.Snapshot
	require.NoError(t, json.Unmarshal([]byte(body), &s))
	return s
}

// scrape fetches /metrics and parses it as Prometheus does.
func (lr *liveRunner) scrape(auth ...string) (map[string]*dto.MetricFamily, error) {
	code, body, err := lr.fetch("/metrics", auth...)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// metrics is scrape for the test's own goroutine.
func (lr *liveRunner) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := lr.scrape()
	require.NoError(t, err)
	return families
}

// sample returns the value of name{labels} (a histogram's sample count), and whether it exists.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(labels) || (len(labels) > 0 && !maps.Equal(got, labels)) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func sleepTask(ms int) mockmanager.NewTask {
	data := json.RawMessage(`{"milliseconds":` + strconv.Itoa(ms) + `}`)
	timeout := int64(60)
	return mockmanager.NewTask{Type: "SLEEP_TASK", Data: &data, Timeout: &timeout}
}

func enqueue(t *testing.T, mm *mockmanager.TestServer, task mockmanager.NewTask) string {
	t.Helper()
	id, err := mm.Enqueue(task)
	require.NoError(t, err)
	return id
}

func waitDone(t *testing.T, mm *mockmanager.TestServer, id string) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := mm.WaitDone(ctx, id)
	require.NoError(t, err)
	return st
}

func ptr[T any](v T) *T { return &v }
