package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/internal/retry"
)

// Options configure a bench run.
type Options struct {
	// Dlite is the dlite binary to measure.
	Dlite string
	// Self is this program, started again for the mock manager, the floor and pinning.
	Self string
	// Tasks is how many no-op tasks each throughput run pre-enqueues.
	Tasks int
	// Workers are the DLITE_PARALLEL_WORKERS of the throughput runs.
	Workers []int
	// Interval is DLITE_POLL_INTERVAL_MILLISECS.
	Interval time.Duration
	// Paced is how many tasks each latency run enqueues one by one, PacedRate per second on
	// average (exponential gaps, so enqueues do not line up with polls).
	Paced     int
	PacedRate float64
	// Sleepers is how many sleeping tasks run at once in the memory run, each sleeping SleepFor.
	Sleepers int
	SleepFor time.Duration
	// Settle is how long a run waits before it measures a steady state; Window how long it measures.
	Settle time.Duration
	Window time.Duration
	// MaxEventsPerPoll caps the events of one task-events answer of the mock manager.
	MaxEventsPerPoll int
	// Backlogs are the queue lengths of the backlog runs: the mock holds that many tasks and
	// answers every poll with all of them not yet acquired, as the real manager does. Each is run
	// with each of BacklogWorkers, measuring the first BacklogTasks results.
	Backlogs       []int
	BacklogWorkers []int
	BacklogTasks   int
	// DliteEnv are further KEY=VALUE settings of every dlite run (DLITE_SPOOL_SYNC_DELAY=0, say).
	DliteEnv []string
	// ProfileDir, when set, has each dlite run write a CPU profile there (a dlite built with the
	// benchprofile tag reads DLITE_BENCH_CPUPROFILE).
	ProfileDir string
	// Pin runs the mock manager on CPU 0 and the runner (or floor) on CPU 1, so neither measures
	// the other's load; it needs at least two CPUs.
	Pin bool
	// Dir keeps the logs of every process; a temporary directory when empty.
	Dir string
	// TmpfsDir, when set, is a directory on tmpfs: the throughput runs then measure dlite a second
	// time with its spool there, to tell the cost of durable results from the rest.
	TmpfsDir string
	// Progress, when set, hears what the run is doing.
	Progress io.Writer
	// Repeat is how many times each throughput run is made; the report shows the medians.
	Repeat int
	// SkipIdle and SkipThroughput leave those measurements out (Sleepers 0 leaves out the
	// sleeping tasks).
	SkipIdle, SkipThroughput bool
}

// The two things every figure is measured for.
const (
	targetDlite = "dlite"
	targetFloor = "floor"
	// targetDliteTmpfs is dlite with its spool on tmpfs, where fsync costs nothing: the difference
	// to targetDlite is what keeping results durable costs on the machine's disk.
	targetDliteTmpfs = "dliteSpoolOnTmpfs"
)

type driver struct {
	opts    Options
	runs    int // throughput runs so far, naming their directories
	account string
	secret  string
	http    *http.Client
	log     io.Writer
}

// Run measures dlite and the floor and returns the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "dlite-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Pin && runtime.NumCPU() < 2 {
		opts.Pin = false
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	d := &driver{
		opts:    opts,
		account: "bench",
		secret:  hex.EncodeToString(secret),
		http:    newFloorClient(64),
		log:     opts.Progress,
	}
	rep := newReport(opts)

	for _, tg := range []string{targetDlite, targetFloor} {
		if opts.SkipIdle {
			break
		}
		idle, err := d.idle(ctx, tg)
		if err != nil {
			return nil, fmt.Errorf("%s idle: %w", tg, err)
		}
		rep.Idle[tg] = idle
	}
	for _, sc := range opts.scenarios() {
		if opts.SkipThroughput {
			break
		}
		row := ThroughputRow{Workers: sc.workers, Queued: sc.queued, Uncapped: sc.uncapped, Results: map[string]Throughput{}}
		targets := []string{targetDlite, targetFloor}
		if opts.TmpfsDir != "" && !sc.uncapped {
			targets = append(targets, targetDliteTmpfs)
		}
		// The runs of the targets alternate, so a disturbance of the machine falls on all of them
		// alike; each figure is the median of the runs.
		runs := map[string][]Throughput{}
		for range max(opts.Repeat, 1) {
			for _, tg := range targets {
				t, err := d.throughput(ctx, tg, sc)
				if err != nil {
					return nil, fmt.Errorf("%s throughput, %s: %w", tg, sc, err)
				}
				runs[tg] = append(runs[tg], t)
			}
		}
		for tg, ts := range runs {
			row.Results[tg] = medianRun(ts)
		}
		rep.Throughput = append(rep.Throughput, row)
	}
	if opts.Sleepers > 0 {
		for _, tg := range []string{targetDlite, targetFloor} {
			s, err := d.sleepers(ctx, tg)
			if err != nil {
				return nil, fmt.Errorf("%s with %d sleeping tasks: %w", tg, opts.Sleepers, err)
			}
			rep.Sleepers[tg] = s
		}
	}
	rep.finish()
	return rep, nil
}

// scenario is one throughput measurement: a worker count and what the mock holds and answers.
type scenario struct {
	workers int
	// queued tasks are in the mock before the target starts; measured is how many results the
	// run waits for (all of them unless the run measures a backlog).
	queued, measured int
	// uncapped answers every poll with the whole queue.
	uncapped bool
}

func (sc scenario) String() string {
	if sc.uncapped {
		return fmt.Sprintf("%d workers, %d queued, uncapped answers", sc.workers, sc.queued)
	}
	return fmt.Sprintf("%d workers", sc.workers)
}

// name is the scenario in file names.
func (sc scenario) name() string {
	if sc.uncapped {
		return fmt.Sprintf("%d-backlog-%d", sc.workers, sc.queued)
	}
	return strconv.Itoa(sc.workers)
}

// scenarios are the throughput runs: every worker count with the capped answers, then every
// backlog with every backlog worker count.
func (o Options) scenarios() []scenario {
	var out []scenario
	for _, w := range o.Workers {
		out = append(out, scenario{workers: w, queued: o.Tasks, measured: o.Tasks})
	}
	for _, q := range o.Backlogs {
		for _, w := range o.BacklogWorkers {
			out = append(out, scenario{workers: w, queued: q, measured: min(o.BacklogTasks, q), uncapped: true})
		}
	}
	return out
}

func (d *driver) progress(format string, args ...any) {
	fmt.Fprintf(d.log, "bench: "+format+"\n", args...)
}

// env is the environment of a child: this one without any DLITE_ setting, plus kv.
func (d *driver) env(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DLITE_") {
			env = append(env, e)
		}
	}
	return append(env, append([]string{"DLITE_ACCOUNT_ID=" + d.account, "DLITE_ACCOUNT_SECRET=" + d.secret}, kv...)...)
}

func (d *driver) cpu(role string) int {
	if !d.opts.Pin {
		return -1
	}
	if role == "mock" {
		return 0
	}
	return 1
}

// mock is a running bench mock manager.
type mock struct {
	*process
	url string
}

// startMock starts a mock manager holding queued tasks of millis, answering every poll with all
// of them when uncapped.
func (d *driver) startMock(dir string, queued int, millis int64, uncapped bool) (*mock, error) {
	argv := []string{d.opts.Self, "mock", "--addr", "127.0.0.1:0", "--max-events", strconv.Itoa(d.opts.MaxEventsPerPoll),
		"--prefill", strconv.Itoa(queued), "--prefill-millis", strconv.FormatInt(millis, 10)}
	if uncapped {
		argv = append(argv, "--uncapped")
	}
	p, stdout, err := startProcess("mock manager", d.opts.Self, d.cpu("mock"), argv, d.env(), filepath.Join(dir, "mock.log"))
	if err != nil {
		return nil, err
	}
	url, err := readFirstLine(stdout, 30*time.Second)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("mock manager: %w (see %s)", err, filepath.Join(dir, "mock.log"))
	}
	return &mock{process: p, url: url}, nil
}

// startTarget starts dlite or the floor with the given number of workers against the mock.
func (d *driver) startTarget(tg string, m *mock, workers int, dir string) (*process, error) {
	interval := strconv.FormatInt(d.opts.Interval.Milliseconds(), 10)
	var argv, env []string
	switch tg {
	case targetDlite, targetDliteTmpfs:
		spoolDir := filepath.Join(dir, "spool")
		if tg == targetDliteTmpfs {
			spoolDir = filepath.Join(d.opts.TmpfsDir, filepath.Base(dir))
		}
		argv = []string{d.opts.Dlite, "run"}
		env = d.env(
			"DLITE_MANAGER_ENDPOINT="+m.url,
			"DLITE_NAME=bench",
			"DLITE_PARALLEL_WORKERS="+strconv.Itoa(workers),
			"DLITE_POLL_INTERVAL_MILLISECS="+interval,
			"DLITE_LOG_FORMAT=json",
			"DLITE_SPOOL_DIR="+spoolDir,
			"DLITE_HTTP_ADDR=off",
			"DLITE_SHUTDOWN_GRACE=10s",
		)
		env = append(env, d.opts.DliteEnv...)
		if d.opts.ProfileDir != "" {
			env = append(env, "DLITE_BENCH_CPUPROFILE="+filepath.Join(d.opts.ProfileDir, filepath.Base(dir)+".pprof"))
		}
	case targetFloor:
		argv = []string{d.opts.Self, "floor", "--endpoint", m.url, "--workers", strconv.Itoa(workers),
			"--interval", d.opts.Interval.String(), "--starts", filepath.Join(dir, "starts.txt")}
		env = d.env()
	}
	p, stdout, err := startProcess(tg, d.opts.Self, d.cpu(tg), argv, env, filepath.Join(dir, logName(tg)))
	if err != nil {
		return nil, err
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return p, nil
}

func (d *driver) runDir(name string) (string, error) {
	dir := filepath.Join(d.opts.Dir, name)
	return dir, os.MkdirAll(dir, 0o700)
}

// stats reads the mock's counters.
func (d *driver) stats(ctx context.Context, m *mock) (MockStats, error) {
	var s MockStats
	err := d.getJSON(ctx, m.url+statsPath, &s)
	return s, err
}

func (d *driver) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// prefilled returns the ids of the tasks the mock queued at its start, oldest first.
func (d *driver) prefilled(ctx context.Context, m *mock) ([]string, error) {
	var ids []string
	err := d.getJSON(ctx, m.url+prefilledPath, &ids)
	return ids, err
}

func (d *driver) enqueueOne(ctx context.Context, m *mock, millis int64) (string, error) {
	body := `{"type":"SLEEP_TASK","data":{"milliseconds":` + strconv.FormatInt(millis, 10) + `}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url+"/admin/tasks", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("enqueue: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// waitRegistered waits until the target has registered with the mock.
func (d *driver) waitRegistered(ctx context.Context, m *mock, p *process) error {
	return waitFor(ctx, 30*time.Second, 10*time.Millisecond, "registration", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		var delegates []json.RawMessage
		if err := d.getJSON(ctx, m.url+"/admin/delegates", &delegates); err != nil {
			return false, err
		}
		return len(delegates) > 0, nil
	})
}

// waitResults waits until the mock has received n results in all.
func (d *driver) waitResults(ctx context.Context, m *mock, p *process, n int64, timeout time.Duration) (MockStats, error) {
	var s MockStats
	err := waitFor(ctx, timeout, 10*time.Millisecond, fmt.Sprintf("%d results", n), func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		var err error
		s, err = d.stats(ctx, m)
		return err == nil && s.Results >= n, err
	})
	return s, err
}

// idle measures a target that is registered and polls an empty queue.
func (d *driver) idle(ctx context.Context, tg string) (Idle, error) {
	dir, err := d.runDir("idle-" + tg)
	if err != nil {
		return Idle{}, err
	}
	m, err := d.startMock(dir, 0, 0, false)
	if err != nil {
		return Idle{}, err
	}
	defer m.stop(10 * time.Second)
	workers := d.opts.Workers[len(d.opts.Workers)-1]
	p, err := d.startTarget(tg, m, workers, dir)
	if err != nil {
		return Idle{}, err
	}
	defer p.stop(30 * time.Second)
	if err := d.waitRegistered(ctx, m, p); err != nil {
		return Idle{}, err
	}
	d.progress("%s idle: registered; settling %s, measuring %s", tg, d.opts.Settle, d.opts.Window)
	if err := retry.Sleep(ctx, d.opts.Settle); err != nil {
		return Idle{}, err
	}
	cpu0, err := ProcCPU(p.pid())
	if err != nil {
		return Idle{}, err
	}
	t0 := time.Now()
	if err := retry.Sleep(ctx, d.opts.Window); err != nil {
		return Idle{}, err
	}
	cpu1, err := ProcCPU(p.pid())
	if err != nil {
		return Idle{}, err
	}
	elapsed := time.Since(t0)
	mem, err := ProcMemory(p.pid())
	if err != nil {
		return Idle{}, err
	}
	return Idle{Workers: workers, RSSMiB: mib(mem.RSS), CPUPercent: round(100*float64(cpu1-cpu0)/float64(elapsed), 2)}, nil
}

// throughput runs the scenario's queued no-op tasks until the measured number of results is in,
// then, with capped answers, Paced tasks enqueued one by one.
func (d *driver) throughput(ctx context.Context, tg string, sc scenario) (Throughput, error) {
	workers := sc.workers
	d.runs++
	dir, err := d.runDir(fmt.Sprintf("throughput-%s-%s-%d", tg, sc.name(), d.runs))
	if err != nil {
		return Throughput{}, err
	}
	m, err := d.startMock(dir, sc.queued, 0, sc.uncapped)
	if err != nil {
		return Throughput{}, err
	}
	defer m.stop(10 * time.Second)
	ids, err := d.prefilled(ctx, m)
	if err != nil {
		return Throughput{}, err
	}
	d.progress("%s, %s: %d tasks queued; running until %d results", tg, sc, len(ids), sc.measured)

	mockCPU := traceCPU(m.pid(), 5*time.Millisecond)
	defer mockCPU.Close()
	p, err := d.startTarget(tg, m, workers, dir)
	if err != nil {
		return Throughput{}, err
	}
	defer p.stop(30 * time.Second)
	cpu := traceCPU(p.pid(), 5*time.Millisecond)
	defer cpu.Close()

	s, err := d.waitResults(ctx, m, p, int64(sc.measured), time.Duration(sc.measured)*20*time.Millisecond+time.Minute)
	if err != nil {
		return Throughput{}, err
	}
	// The results counted when the run was seen to be over, up to the last one's time.
	n := s.Results
	from, to := time.Unix(0, s.FirstAcquireNano), time.Unix(0, s.LastResultNano)
	// Let the samplers see the end of the window before reading it off.
	if err := retry.Sleep(ctx, 20*time.Millisecond); err != nil {
		return Throughput{}, err
	}
	took := to.Sub(from)
	res := Throughput{
		Tasks:           n,
		Seconds:         round(took.Seconds(), 3),
		TasksPerSecond:  round(float64(n)/took.Seconds(), 1),
		CPUPerTaskUs:    round(float64(cpu.between(from, to).Microseconds())/float64(n), 1),
		MockCPUPerTask:  round(float64(mockCPU.between(from, to).Microseconds())/float64(n), 1),
		CoresUsed:       round(float64(cpu.between(from, to))/float64(took), 2),
		MockCoresUsed:   round(float64(mockCPU.between(from, to))/float64(took), 2),
		Polls:           s.Polls,
		AcquiresRefused: s.AcquiresRefused,
	}
	d.progress("%s, %s: %.0f tasks/s, %.1f µs CPU per task (mock %.1f µs), %d polls", tg, sc, res.TasksPerSecond, res.CPUPerTaskUs, res.MockCPUPerTask, res.Polls)
	if sc.uncapped {
		// A backlog run ends with the queue still full; the paced tasks would not be offered.
		return res, nil
	}

	paced, enqueued, err := d.paced(ctx, m)
	if err != nil {
		return Throughput{}, err
	}
	if _, err := d.waitResults(ctx, m, p, int64(len(ids)+len(paced)), time.Minute); err != nil {
		return Throughput{}, err
	}
	var acquired map[string]int64
	if err := d.getJSON(ctx, m.url+acquiresPath, &acquired); err != nil {
		return Throughput{}, err
	}
	p.stop(30 * time.Second)
	starts, err := readStarts(tg, dir)
	if err != nil {
		return Throughput{}, err
	}
	var underLoad, dispatch []time.Duration
	for _, id := range ids {
		if at, ok := starts[id]; ok && acquired[id] > 0 {
			underLoad = append(underLoad, time.Duration(at-acquired[id]))
		}
	}
	for i, id := range paced {
		if at, ok := starts[id]; ok {
			dispatch = append(dispatch, time.Duration(at-enqueued[i]))
		}
	}
	res.AcquireToStart = percentiles(underLoad)
	res.EnqueueToStart = percentiles(dispatch)
	d.progress("%s, %d workers: enqueue→start p50 %.1f ms p99 %.1f ms; acquire→start under load p50 %.2f ms p99 %.2f ms",
		tg, workers, res.EnqueueToStart.P50, res.EnqueueToStart.P99, res.AcquireToStart.P50, res.AcquireToStart.P99)
	return res, nil
}

// paced enqueues Paced tasks with exponential gaps and returns their ids and when each enqueue
// was sent.
func (d *driver) paced(ctx context.Context, m *mock) ([]string, []int64, error) {
	ids := make([]string, 0, d.opts.Paced)
	at := make([]int64, 0, d.opts.Paced)
	mean := time.Duration(float64(time.Second) / d.opts.PacedRate)
	for range d.opts.Paced {
		gap := time.Duration(mathrand.ExpFloat64() * float64(mean))
		if err := retry.Sleep(ctx, gap); err != nil {
			return nil, nil, err
		}
		sent := time.Now().UnixNano()
		id, err := d.enqueueOne(ctx, m, 0)
		if err != nil {
			return nil, nil, err
		}
		ids = append(ids, id)
		at = append(at, sent)
	}
	return ids, at, nil
}

// readStarts returns when each task's handler started, by task id, in Unix nanoseconds: from the
// runner's "task started" log lines, or the floor's own record.
func readStarts(tg, dir string) (map[string]int64, error) {
	starts := map[string]int64{}
	switch tg {
	case targetFloor:
		b, err := os.ReadFile(filepath.Join(dir, "starts.txt"))
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(b)) {
			id, at, ok := strings.Cut(strings.TrimSpace(line), " ")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(at, 10, 64)
			if err != nil {
				return nil, err
			}
			starts[id] = n
		}
	case targetDlite, targetDliteTmpfs:
		f, err := os.Open(filepath.Join(dir, logName(tg)))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.Contains(line, []byte(`"task started"`)) {
				continue
			}
			var rec struct {
				Time   time.Time `json:"time"`
				Msg    string    `json:"msg"`
				TaskID string    `json:"task_id"`
			}
			if json.Unmarshal(line, &rec) != nil || rec.Msg != "task started" {
				continue
			}
			starts[rec.TaskID] = rec.Time.UnixNano()
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return starts, nil
}

// sleepers runs Sleepers tasks that all sleep at once and measures the target while they wait.
func (d *driver) sleepers(ctx context.Context, tg string) (Sleepers, error) {
	dir, err := d.runDir("sleepers-" + tg)
	if err != nil {
		return Sleepers{}, err
	}
	n := d.opts.Sleepers
	m, err := d.startMock(dir, n, d.opts.SleepFor.Milliseconds(), false)
	if err != nil {
		return Sleepers{}, err
	}
	defer m.stop(10 * time.Second)
	d.progress("%s: %d sleeping tasks queued; running with %d workers", tg, n, n)
	p, err := d.startTarget(tg, m, n, dir)
	if err != nil {
		return Sleepers{}, err
	}
	// The run ends here, with the tasks still asleep: their results tell nothing more.
	defer p.kill()
	var s MockStats
	err = waitFor(ctx, d.opts.SleepFor/2, 10*time.Millisecond, "every task acquired", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		var err error
		s, err = d.stats(ctx, m)
		return err == nil && s.Acquires >= int64(n), err
	})
	if err != nil {
		return Sleepers{}, err
	}
	ramp := time.Duration(s.LastAcquireNano - s.FirstAcquireNano)
	// Every task is acquired; the handler starts follow within milliseconds. Settle, then measure.
	if err := retry.Sleep(ctx, d.opts.Settle); err != nil {
		return Sleepers{}, err
	}
	cpu0, err := ProcCPU(p.pid())
	if err != nil {
		return Sleepers{}, err
	}
	t0 := time.Now()
	if err := retry.Sleep(ctx, d.opts.Window); err != nil {
		return Sleepers{}, err
	}
	cpu1, err := ProcCPU(p.pid())
	if err != nil {
		return Sleepers{}, err
	}
	elapsed := time.Since(t0)
	mem, err := ProcMemory(p.pid())
	if err != nil {
		return Sleepers{}, err
	}
	if s2, err := d.stats(ctx, m); err == nil && s2.Results > 0 {
		return Sleepers{}, fmt.Errorf("%d tasks finished while measuring: make the sleep longer than the ramp, settle and window", s2.Results)
	}
	out := Sleepers{
		Tasks:        n,
		RampSeconds:  round(ramp.Seconds(), 2),
		RSSMiB:       mib(mem.RSS),
		PeakRSSMiB:   mib(mem.Peak),
		CPUPercent:   round(100*float64(cpu1-cpu0)/float64(elapsed), 2),
		BytesPerTask: mem.RSS / int64(n),
	}
	d.progress("%s: %d sleeping tasks: RSS %.1f MiB (peak %.1f MiB), CPU %.2f%% while they wait", tg, n, out.RSSMiB, out.PeakRSSMiB, out.CPUPercent)
	return out, nil
}

// medianRun is the run with the median throughput, carrying the medians of the CPU figures and
// the range of throughput and CPU per task over all runs.
func medianRun(ts []Throughput) Throughput {
	median := func(key func(Throughput) float64) float64 {
		v := make([]float64, len(ts))
		for i, t := range ts {
			v[i] = key(t)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	byRate := slices.Clone(ts)
	slices.SortFunc(byRate, func(a, b Throughput) int { return cmp.Compare(a.TasksPerSecond, b.TasksPerSecond) })
	out := byRate[len(byRate)/2]
	out.Runs = len(ts)
	out.CPUPerTaskUs = median(func(t Throughput) float64 { return t.CPUPerTaskUs })
	out.MockCPUPerTask = median(func(t Throughput) float64 { return t.MockCPUPerTask })
	out.TasksPerSecondRange = [2]float64{byRate[0].TasksPerSecond, byRate[len(byRate)-1].TasksPerSecond}
	cpus := make([]float64, len(ts))
	for i, t := range ts {
		cpus[i] = t.CPUPerTaskUs
	}
	out.CPUPerTaskRange = [2]float64{slices.Min(cpus), slices.Max(cpus)}
	return out
}

func mib(b int64) float64 { return round(float64(b)/(1<<20), 1) }

func logName(target string) string { return target + ".log" }
