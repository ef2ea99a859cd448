package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/mockmanager"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentilesUseTheNearestRank(t *testing.T) {
	t.Parallel()
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(samples)
	require.Equal(t, Percentiles{Count: 100, P50: 50, P99: 99, Max: 100}, p)
	require.Equal(t, time.Duration(100)*time.Millisecond, samples[0], "the samples are not reordered")
	require.Equal(t, Percentiles{}, percentiles(nil))
	require.Equal(t, Percentiles{Count: 1, P50: 7, P99: 7, Max: 7}, percentiles([]time.Duration{7 * time.Millisecond}))
}

func TestRatio(t *testing.T) {
	t.Parallel()
	require.InDelta(t, 0.67, ratio(2, 3), 1e-9)
	require.Zero(t, ratio(1, 0))
}

func TestProcReadsThisProcess(t *testing.T) {
	t.Parallel()
	pid := os.Getpid()
	mem, err := ProcMemory(pid)
	require.NoError(t, err)
	require.Positive(t, mem.RSS)
	require.GreaterOrEqual(t, mem.Peak, mem.RSS)

	// Burn CPU until the kernel has accounted at least one tick of it.
	deadline := time.Now().Add(30 * time.Second)
	x := 0
	for {
		cpu, err := ProcCPU(pid)
		require.NoError(t, err)
		if cpu > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no CPU time accounted")
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
	_, err = ProcCPU(1 << 30)
	require.Error(t, err, "a process that does not exist")
}

func TestCPUTraceInterpolatesBetweenSamples(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	tr := &cpuTrace{samples: []cpuSample{
		{at: t0, cpu: 0},
		{at: t0.Add(time.Second), cpu: 100 * time.Millisecond},
		{at: t0.Add(2 * time.Second), cpu: 300 * time.Millisecond},
	}}
	require.Equal(t, 50*time.Millisecond, tr.at(t0.Add(500*time.Millisecond)))
	require.Equal(t, 150*time.Millisecond, tr.between(t0.Add(500*time.Millisecond), t0.Add(1500*time.Millisecond)))
	require.Equal(t, time.Duration(0), tr.at(t0.Add(-time.Hour)), "before the first sample")
	require.Equal(t, 300*time.Millisecond, tr.at(t0.Add(time.Hour)), "after the last sample")
}

func TestCallKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, path, kind string }{
		{http.MethodGet, "/api/agent/delegates/d-1/task-events", "poll"},
		{http.MethodPut, "/api/agent/v2/delegates/d-1/tasks/t-1/acquire", "acquire"},
		{http.MethodPost, "/api/agent/v2/tasks/t-1/delegates/d-1", "result"},
		{http.MethodPost, "/api/executions/t-1/response", "result"},
		{http.MethodPost, "/api/agent/delegates/register", ""},
		{http.MethodPost, "/admin/tasks", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		require.Equal(t, tc.kind, callKind(r), "%s %s", tc.method, tc.path)
	}
	require.Equal(t, "t-1", acquiredTask("/api/agent/v2/delegates/d-1/tasks/t-1/acquire"))
	require.Empty(t, acquiredTask("/api/agent/v2/delegates/d-1/tasks/t-1"))
}

func TestReadStarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "starts.txt"), []byte("t-1 100\nt-2 200\n"), 0o600))
	starts, err := readStarts(targetFloor, dir)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"t-1": 100, "t-2": 200}, starts)

	log := strings.Join([]string{
		`{"time":"2026-01-02T03:04:05.000000006Z","level":"INFO","msg":"task started","task_id":"t-9","task_type":"SLEEP_TASK"}`,
		`{"time":"2026-01-02T03:04:06Z","level":"INFO","msg":"task finished","task_id":"t-9"}`,
		`not json, "task started"`,
	}, "\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, logName(targetDlite)), []byte(log), 0o600))
	starts, err = readStarts(targetDlite, dir)
	require.NoError(t, err)
	want := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	require.Equal(t, map[string]int64{"t-9": want}, starts)
}

// TestFloorRunsTasksAgainstTheMockManager runs the floor against a real mock manager behind the
// counting wrapper: every task is acquired once, answered once, and its start recorded.
func TestFloorRunsTasksAgainstTheMockManager(t *testing.T) {
	t.Parallel()
	secret := "00112233445566778899aabbccddeeff"
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "bench", AccountSecret: secret, MaxEventsPerPoll: 8})
	require.NoError(t, err)
	counter := newCounting(mm.Handler())
	srv := httptest.NewServer(counter)
	defer srv.Close()
	const n = 40
	data := json.RawMessage(`{"milliseconds":0}`)
	for range n {
		_, err := mm.Enqueue(mockmanager.NewTask{Type: "SLEEP_TASK", Data: &data})
		require.NoError(t, err)
	}
	starts := filepath.Join(t.TempDir(), "starts.txt")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunFloor(ctx, FloorOptions{Endpoint: srv.URL, AccountID: "bench", Secret: secret, Workers: 4,
			Interval: 10 * time.Millisecond, StartsFile: starts})
	}()
	require.Eventually(t, func() bool { return counter.stats().Results == n }, 30*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	st := counter.stats()
	require.EqualValues(t, n, st.Acquires)
	require.Zero(t, st.AcquiresRefused, "the floor never acquires a task twice")
	require.Zero(t, st.ResultsRefused)
	require.Positive(t, st.FirstAcquireNano)
	require.GreaterOrEqual(t, st.LastResultNano, st.FirstAcquireNano)
	require.Len(t, mm.Tasks(mockmanager.StateDone), n)
	got, err := readStarts(targetFloor, filepath.Dir(starts))
	require.NoError(t, err)
	require.Len(t, got, n)

	// The counters are served next to the API, for the driver.
	resp, err := http.Get(srv.URL + statsPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	var served MockStats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&served))
	require.EqualValues(t, n, served.Results)
	srv.CloseClientConnections()
}

func TestReportRatiosTargetsAndTable(t *testing.T) {
	t.Parallel()
	rep := newReport(Options{Tasks: 10, Workers: []int{128}, Interval: 100 * time.Millisecond})
	rep.Throughput = []ThroughputRow{{Workers: 128, Results: map[string]Throughput{
		targetDlite:      {TasksPerSecond: 800, CPUPerTaskUs: 300},
		targetFloor:      {TasksPerSecond: 1000, CPUPerTaskUs: 250, MockCoresUsed: 0.95},
		targetDliteTmpfs: {TasksPerSecond: 900, CPUPerTaskUs: 260},
	}}}
	rep.Idle[targetDlite] = Idle{Workers: 128, RSSMiB: 20}
	rep.Idle[targetFloor] = Idle{Workers: 128, RSSMiB: 10}
	rep.Sleepers[targetDlite] = Sleepers{Tasks: 10000, RSSMiB: 160}
	rep.Sleepers[targetFloor] = Sleepers{Tasks: 10000, RSSMiB: 50}
	rep.finish()

	row := rep.Throughput[0]
	require.InDelta(t, 0.8, row.Ratios.Throughput, 1e-9)
	require.InDelta(t, 1.2, row.Ratios.CPUPerTask, 1e-9)
	require.NotNil(t, row.TmpfsRatios)
	require.InDelta(t, 1.04, row.TmpfsRatios.CPUPerTask, 1e-9)
	met := map[string]bool{}
	for _, tg := range rep.Targets {
		met[tg.Name] = tg.Met
	}
	require.Equal(t, map[string]bool{
		"throughput at 128 workers":     true,
		"CPU per task, 128 workers":     true,
		"RSS with 10000 sleeping tasks": false,
		"idle RSS":                      true,
	}, met)
	require.Len(t, rep.Notes, 1, "the mock kept a core busy during the floor's run")

	var table strings.Builder
	require.NoError(t, rep.WriteTable(&table))
	for _, want := range []string{"throughput (tasks/s)", "800.0", "1000.0", "0.80", "spool on tmpfs", "NOT MET", "note:"} {
		require.Contains(t, table.String(), want)
	}
	_, err := json.Marshal(rep)
	require.NoError(t, err)
}

func TestStartProcessReadsItsFirstLineAndStops(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, stdout, err := startProcess("shell", "", -1, []string{"/bin/sh", "-c", "echo ready; echo oops >&2; exec sleep 60"}, nil, filepath.Join(dir, "err.log"))
	require.NoError(t, err)
	line, err := readFirstLine(stdout, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "ready", line)
	require.NoError(t, p.exited(), "still running")
	p.stop(10 * time.Second)
	require.Error(t, p.exited(), "stopped by SIGTERM")
	b, err := os.ReadFile(filepath.Join(dir, "err.log"))
	require.NoError(t, err)
	require.Equal(t, "oops\n", string(b))
}

func TestMedianRunTakesEachFigureFromTheMiddle(t *testing.T) {
	t.Parallel()
	got := medianRun([]Throughput{
		{TasksPerSecond: 300, CPUPerTaskUs: 10, MockCPUPerTask: 5, Polls: 3},
		{TasksPerSecond: 100, CPUPerTaskUs: 30, MockCPUPerTask: 9, Polls: 1},
		{TasksPerSecond: 200, CPUPerTaskUs: 50, MockCPUPerTask: 7, Polls: 2},
	})
	require.Equal(t, 3, got.Runs)
	require.InDelta(t, 200, got.TasksPerSecond, 1e-9)
	require.EqualValues(t, 2, got.Polls, "the other figures come from the run of median throughput")
	require.InDelta(t, 30, got.CPUPerTaskUs, 1e-9)
	require.InDelta(t, 7, got.MockCPUPerTask, 1e-9)
	require.Equal(t, [2]float64{100, 300}, got.TasksPerSecondRange)
	require.Equal(t, [2]float64{10, 50}, got.CPUPerTaskRange)
}

func TestBacklogRowsAreComparedToTheCappedRun(t *testing.T) {
	t.Parallel()
	rep := newReport(Options{Tasks: 10, Workers: []int{16}, Backlogs: []int{10000, 20000}, BacklogWorkers: []int{16}, BacklogTasks: 100})
	rep.Throughput = []ThroughputRow{
		{Workers: 16, Results: map[string]Throughput{
			targetDlite: {TasksPerSecond: 1000, CPUPerTaskUs: 300}, targetFloor: {TasksPerSecond: 1000, CPUPerTaskUs: 250}}},
		{Workers: 16, Queued: 10000, Uncapped: true, Results: map[string]Throughput{
			targetDlite: {TasksPerSecond: 900, CPUPerTaskUs: 330}, targetFloor: {TasksPerSecond: 3000, CPUPerTaskUs: 200}}},
		{Workers: 16, Queued: 20000, Uncapped: true, Results: map[string]Throughput{
			targetDlite: {TasksPerSecond: 250, CPUPerTaskUs: 2600}, targetFloor: {TasksPerSecond: 3000, CPUPerTaskUs: 200}}},
	}
	rep.finish()
	got := map[string]Target{}
	for _, tg := range rep.Targets {
		got[tg.Name] = tg
	}
	require.InDelta(t, 1.65, got["CPU per task, 16 workers, 10000 queued"].Value, 1e-9)
	require.InDelta(t, 13.0, rep.Throughput[2].Ratios.CPUPerTask, 1e-9)
	require.Equal(t, Target{Name: "throughput, 16 workers, 20000 queued, vs capped", Goal: "≥ 0.8 × capped", Value: 0.25},
		got["throughput, 16 workers, 20000 queued, vs capped"])
	require.InDelta(t, 13.0, got["CPU per task, 16 workers, 20000 queued"].Value, 1e-9)
	require.InDelta(t, 8.67, got["CPU per task, 16 workers, 20000 queued, vs capped"].Value, 1e-9)
	require.NotContains(t, got, "throughput, 16 workers, 10000 queued, vs capped", "only the largest backlog is held to the capped run")
	var table strings.Builder
	require.NoError(t, rep.WriteTable(&table))
	require.Contains(t, table.String(), "16, 20000 queued")
	require.Contains(t, table.String(), "backlog runs: [10000 20000] tasks queued")
}

func TestBacklogAnswersWithEveryTaskNotAcquired(t *testing.T) {
	t.Parallel()
	b := newBacklog("acct", []string{"t-1", "t-2", "t-3"})
	var page struct {
		Events []struct {
			AccountID string `json:"accountId"`
			ID        string `json:"delegateTaskId"`
			TaskType  string `json:"taskType"`
		} `json:"delegateTaskEvents"`
	}
	ids := func() []string {
		require.NoError(t, json.Unmarshal(b.answer(), &page))
		var out []string
		for _, ev := range page.Events {
			require.Equal(t, "acct", ev.AccountID)
			require.Equal(t, "SLEEP_TASK", ev.TaskType)
			out = append(out, ev.ID)
		}
		return out
	}
	require.Equal(t, []string{"t-1", "t-2", "t-3"}, ids())
	b.take("t-2")
	require.Equal(t, []string{"t-1", "t-3"}, ids())
	b.take("t-1")
	b.take("t-3")
	require.Empty(t, ids())
}

// The floor decodes an answer once and takes later tasks from what it kept: against a mock that
// answers every poll with the whole queue it polls a few times, not once per task, and acquires
// every task once.
func TestFloorTakesABacklogFromOneAnswer(t *testing.T) {
	t.Parallel()
	secret := "00112233445566778899aabbccddeeff"
	mm, err := mockmanager.New(mockmanager.Options{AccountID: "bench", AccountSecret: secret, MaxEventsPerPoll: 1})
	require.NoError(t, err)
	counter := newCounting(mm.Handler())
	const n = 300
	counter.prefilled, err = prefill(mm, n, 0)
	require.NoError(t, err)
	counter.backlog = newBacklog("bench", counter.prefilled)
	srv := httptest.NewServer(counter)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunFloor(ctx, FloorOptions{Endpoint: srv.URL, AccountID: "bench", Secret: secret, Workers: 4, Interval: time.Second})
	}()
	require.Eventually(t, func() bool { return counter.stats().Results == n }, 60*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	st := counter.stats()
	require.EqualValues(t, n, st.Acquires)
	require.Zero(t, st.AcquiresRefused)
	require.Less(t, st.Polls, int64(n/10), "polls for %d tasks", n)
	require.Len(t, mm.Tasks(mockmanager.StateDone), n)
	srv.CloseClientConnections()
}

func TestTaskIDsAreFoundWhereTheyLie(t *testing.T) {
	t.Parallel()
	b := newBacklog("acct", []string{"task-1", "task-2"})
	require.Equal(t, []string{"task-1", "task-2"}, taskIDs(nil, b.answer()))
	require.Empty(t, taskIDs(nil, []byte(`{"delegateTaskEvents":[]}`)))
	require.Equal(t, []string{"a"}, taskIDs(nil, []byte(`{"delegateTaskEvents":[{"delegateTaskId":"a"},{"delegateTaskId":"b`)))
}
