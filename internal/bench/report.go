package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the result of a bench run.
type Report struct {
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	// Idle is each target registered and polling an empty queue, by target ("dlite", "floor").
	Idle map[string]Idle `json:"idle"`
	// Throughput has one row per worker count.
	Throughput []ThroughputRow `json:"throughput"`
	// Sleepers is each target with Settings.Sleepers tasks asleep at once.
	Sleepers map[string]Sleepers `json:"sleepers,omitempty"`
	// Targets are the goals and whether this run met them.
	Targets []Target `json:"targets"`
	// Notes say what limits the figures.
	Notes []string `json:"notes,omitempty"`
}

// Machine describes where the bench ran.
type Machine struct {
	Cores     int    `json:"cores"`
	CPU       string `json:"cpu,omitempty"`
	GoVersion string `json:"goVersion"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Date      string `json:"date"`
}

// Settings are the options the figures were measured with.
type Settings struct {
	Tasks             int     `json:"tasks"`
	Workers           []int   `json:"workers"`
	PollIntervalMs    int64   `json:"pollIntervalMs"`
	Repeat            int     `json:"repeat"`
	PacedTasks        int     `json:"pacedTasks"`
	PacedRatePerSec   float64 `json:"pacedRatePerSecond"`
	Sleepers          int     `json:"sleepers"`
	SleepMs           int64   `json:"sleepMs"`
	SettleMs          int64   `json:"settleMs"`
	WindowMs          int64   `json:"windowMs"`
	MockMaxEvents     int     `json:"mockMaxEventsPerPoll"`
	Backlogs          []int   `json:"backlogs,omitempty"`
	BacklogWorkers    []int   `json:"backlogWorkers,omitempty"`
	BacklogTasks      int     `json:"backlogTasks,omitempty"`
	Pinned            bool    `json:"pinned"`
	MockCPU           string  `json:"mockCpu"`
	TargetCPU         string  `json:"targetCpu"`
	MockValidation    string  `json:"mockValidation"`
	LatencyDefinition string  `json:"latencyDefinition"`
}

// Idle is a target registered and polling an empty queue.
type Idle struct {
	Workers    int     `json:"workers"`
	RSSMiB     float64 `json:"rssMiB"`
	CPUPercent float64 `json:"cpuPercent"`
}

// ThroughputRow is one scenario (a worker count, and what the mock holds and answers), measured
// for each target.
type ThroughputRow struct {
	Workers int `json:"workers"`
	// Queued is how many tasks the mock held at the start.
	Queued int `json:"queued"`
	// Uncapped rows answer every poll with the whole queue (a backlog run, which measures the
	// first Settings.BacklogTasks results); the others with at most Settings.MockMaxEvents.
	Uncapped bool                  `json:"uncapped"`
	Results  map[string]Throughput `json:"results"`
	// Ratios are dlite's figures divided by the floor's.
	Ratios Ratios `json:"ratios"`
	// TmpfsRatios are the figures of dlite with its spool on tmpfs divided by the floor's.
	TmpfsRatios *Ratios `json:"spoolOnTmpfsRatios,omitempty"`
}

// Throughput is one target's run of pre-enqueued no-op tasks and of paced tasks.
type Throughput struct {
	// Runs is how many runs the figures are the medians of; the ranges span those runs.
	Runs                int        `json:"runs"`
	TasksPerSecondRange [2]float64 `json:"tasksPerSecondRange"`
	CPUPerTaskRange     [2]float64 `json:"cpuPerTaskUsRange"`
	Tasks               int64      `json:"tasks"`
	Seconds             float64    `json:"seconds"`
	// TasksPerSecond is Tasks over the time from the first acquire to the last result.
	TasksPerSecond float64 `json:"tasksPerSecond"`
	// CPUPerTaskUs is the target's CPU time (user + system) in that window over Tasks.
	CPUPerTaskUs float64 `json:"cpuPerTaskUs"`
	// MockCPUPerTask is the mock manager's CPU time per task in the same window.
	MockCPUPerTask float64 `json:"mockCpuPerTaskUs"`
	// CoresUsed and MockCoresUsed are the CPU time over the window: 1 is one core kept busy.
	CoresUsed     float64 `json:"coresUsed"`
	MockCoresUsed float64 `json:"mockCoresUsed"`
	// Polls and AcquiresRefused count the task-events calls and the refused acquires of the run.
	Polls           int64 `json:"polls"`
	AcquiresRefused int64 `json:"acquiresRefused"`
	// EnqueueToStart is the dispatch latency of the paced tasks.
	EnqueueToStart Percentiles `json:"enqueueToStart"`
	// AcquireToStart is, for the pre-enqueued tasks, the time from the mock answering the acquire
	// to the handler start: what the runner adds under load.
	AcquireToStart Percentiles `json:"acquireToStartUnderLoad"`
}

// Ratios are dlite's figures over the floor's.
type Ratios struct {
	Throughput        float64 `json:"throughput"`
	CPUPerTask        float64 `json:"cpuPerTask"`
	EnqueueToStartP50 float64 `json:"enqueueToStartP50"`
	EnqueueToStartP99 float64 `json:"enqueueToStartP99"`
}

// Sleepers is a target holding many sleeping tasks.
type Sleepers struct {
	Tasks int `json:"tasks"`
	// RampSeconds is the time from the first acquire to the last.
	RampSeconds  float64 `json:"rampSeconds"`
	RSSMiB       float64 `json:"rssMiB"`
	PeakRSSMiB   float64 `json:"peakRssMiB"`
	CPUPercent   float64 `json:"cpuPercent"`
	BytesPerTask int64   `json:"bytesPerTask"`
}

// Target is one goal.
type Target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

func newReport(opts Options) *Report {
	mockCPU, targetCPU := "any", "any"
	if opts.Pin {
		mockCPU, targetCPU = "0", "1"
	}
	return &Report{
		Machine: Machine{
			Cores:     runtime.NumCPU(),
			CPU:       cpuModel(),
			GoVersion: runtime.Version(),
			OS:        runtime.GOOS,
			Arch:      runtime.GOARCH,
			Date:      time.Now().UTC().Format(time.RFC3339),
		},
		Settings: Settings{
			Tasks:           opts.Tasks,
			Repeat:          max(opts.Repeat, 1),
			Workers:         opts.Workers,
			PollIntervalMs:  opts.Interval.Milliseconds(),
			PacedTasks:      opts.Paced,
			PacedRatePerSec: opts.PacedRate,
			Sleepers:        opts.Sleepers,
			SleepMs:         opts.SleepFor.Milliseconds(),
			SettleMs:        opts.Settle.Milliseconds(),
			WindowMs:        opts.Window.Milliseconds(),
			MockMaxEvents:   opts.MaxEventsPerPoll,
			Backlogs:        opts.Backlogs,
			BacklogWorkers:  opts.BacklogWorkers,
			BacklogTasks:    opts.BacklogTasks,
			Pinned:          opts.Pin,
			MockCPU:         mockCPU,
			TargetCPU:       targetCPU,
			MockValidation:  "requests and responses validated against the contract, JWE checked on every call",
			LatencyDefinition: "enqueueToStart: from just before the admin API call that enqueues a paced task " +
				"to the handler start (dlite: the time of its \"task started\" log line, written in the task's " +
				"slot right before validation and the handler; floor: right after the acquire answer is decoded); " +
				"acquireToStartUnderLoad: from the mock manager writing the acquire answer to that same handler start",
		},
		Idle:     map[string]Idle{},
		Sleepers: map[string]Sleepers{},
	}
}

// finish computes the ratios and checks the targets.
func (r *Report) finish() {
	for i := range r.Throughput {
		row := &r.Throughput[i]
		dl, fl := row.Results[targetDlite], row.Results[targetFloor]
		row.Ratios = Ratios{
			Throughput:        ratio(dl.TasksPerSecond, fl.TasksPerSecond),
			CPUPerTask:        ratio(dl.CPUPerTaskUs, fl.CPUPerTaskUs),
			EnqueueToStartP50: ratio(dl.EnqueueToStart.P50, fl.EnqueueToStart.P50),
			EnqueueToStartP99: ratio(dl.EnqueueToStart.P99, fl.EnqueueToStart.P99),
		}
		if tm, ok := row.Results[targetDliteTmpfs]; ok {
			row.TmpfsRatios = &Ratios{
				Throughput:        ratio(tm.TasksPerSecond, fl.TasksPerSecond),
				CPUPerTask:        ratio(tm.CPUPerTaskUs, fl.CPUPerTaskUs),
				EnqueueToStartP50: ratio(tm.EnqueueToStart.P50, fl.EnqueueToStart.P50),
				EnqueueToStartP99: ratio(tm.EnqueueToStart.P99, fl.EnqueueToStart.P99),
			}
		}
		if fl.MockCoresUsed >= 0.9 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: the mock manager kept %.2f cores busy during the floor's run, "+
				"about the most it reaches in these runs (it validates every call against the contract and checks the JWE): "+
				"the floor's throughput is then the mock's capacity, and the floor itself could go faster",
				row.label(), fl.MockCoresUsed))
		}
	}
	for _, row := range r.Throughput {
		if row.Workers == 128 && !row.Uncapped {
			r.Targets = append(r.Targets,
				Target{Name: "throughput at 128 workers", Goal: "≥ 0.7 × floor", Value: row.Ratios.Throughput, Met: row.Ratios.Throughput >= 0.7})
		}
	}
	for _, row := range r.Throughput {
		r.Targets = append(r.Targets, Target{Name: "CPU per task, " + row.label(), Goal: "≤ 1.5 × floor",
			Value: row.Ratios.CPUPerTask, Met: row.Ratios.CPUPerTask > 0 && row.Ratios.CPUPerTask <= 1.5})
	}
	// A backlog must not make a task dearer: the largest one against the capped run at the same
	// worker count.
	for _, row := range r.Throughput {
		if !row.Uncapped || row.Queued != slices.Max(r.Settings.Backlogs) {
			continue
		}
		i := slices.IndexFunc(r.Throughput, func(c ThroughputRow) bool { return !c.Uncapped && c.Workers == row.Workers })
		if i < 0 {
			continue
		}
		capped, backlog := r.Throughput[i].Results[targetDlite], row.Results[targetDlite]
		tput, cpu := ratio(backlog.TasksPerSecond, capped.TasksPerSecond), ratio(backlog.CPUPerTaskUs, capped.CPUPerTaskUs)
		r.Targets = append(r.Targets,
			Target{Name: "throughput, " + row.label() + ", vs capped", Goal: "≥ 0.8 × capped", Value: tput, Met: tput >= 0.8},
			Target{Name: "CPU per task, " + row.label() + ", vs capped", Goal: "≤ 1.2 × capped", Value: cpu, Met: cpu > 0 && cpu <= 1.2})
	}
	if s, ok := r.Sleepers[targetDlite]; ok {
		r.Targets = append(r.Targets, Target{Name: fmt.Sprintf("RSS with %d sleeping tasks", s.Tasks), Goal: "≤ 150 MiB", Value: s.RSSMiB, Met: s.RSSMiB <= 150})
	}
	if s, ok := r.Idle[targetDlite]; ok {
		r.Targets = append(r.Targets, Target{Name: "idle RSS", Goal: "≤ 25 MiB", Value: s.RSSMiB, Met: s.RSSMiB <= 25})
	}
}

// label names the row in the table and the targets: "16 workers", "16 workers, 20000 queued".
func (row ThroughputRow) label() string {
	if row.Uncapped {
		return fmt.Sprintf("%d workers, %d queued", row.Workers, row.Queued)
	}
	return fmt.Sprintf("%d workers", row.Workers)
}

// WriteTable writes the report as a table for people.
func (r *Report) WriteTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	m, s := r.Machine, r.Settings
	fmt.Fprintf(bw, "dlite bench — %s, %d cores (%s), %s %s/%s\n", m.Date, m.Cores, m.CPU, m.GoVersion, m.OS, m.Arch)
	fmt.Fprintf(bw, "poll interval %d ms; %d pre-enqueued no-op tasks per run, medians of %d runs; %d paced tasks at %.0f/s; mock max %d events per poll; pinned: %t (mock CPU %s, runner CPU %s)\n",
		s.PollIntervalMs, s.Tasks, s.Repeat, s.PacedTasks, s.PacedRatePerSec, s.MockMaxEvents, s.Pinned, s.MockCPU, s.TargetCPU)
	if len(s.Backlogs) > 0 {
		fmt.Fprintf(bw, "backlog runs: %v tasks queued, every poll answered with all not yet acquired, the first %d results measured\n",
			s.Backlogs, s.BacklogTasks)
	}
	fmt.Fprintln(bw)

	line := func(cols ...string) {
		fmt.Fprintf(bw, "%-21s %-34s %12s %12s %8s\n", cols[0], cols[1], cols[2], cols[3], cols[4])
	}
	line("workers", "metric", "dlite", "floor", "ratio")
	line("-------", "------", "-----", "-----", "-----")
	for _, row := range r.Throughput {
		dl, fl := row.Results[targetDlite], row.Results[targetFloor]
		w := fmt.Sprint(row.Workers)
		if row.Uncapped {
			w = fmt.Sprintf("%d, %d queued", row.Workers, row.Queued)
		}
		line(w, "throughput (tasks/s)", f1(dl.TasksPerSecond), f1(fl.TasksPerSecond), f2(row.Ratios.Throughput))
		line(w, "CPU per task (µs)", f1(dl.CPUPerTaskUs), f1(fl.CPUPerTaskUs), f2(row.Ratios.CPUPerTask))
		if row.Uncapped {
			line(w, "cores used (runner)", f2(dl.CoresUsed), f2(fl.CoresUsed), "")
			line(w, "cores used (mock)", f2(dl.MockCoresUsed), f2(fl.MockCoresUsed), "")
			line(w, "polls", fmt.Sprint(dl.Polls), fmt.Sprint(fl.Polls), "")
			continue
		}
		line(w, "enqueue→start p50 (ms)", f1(dl.EnqueueToStart.P50), f1(fl.EnqueueToStart.P50), f2(row.Ratios.EnqueueToStartP50))
		line(w, "enqueue→start p99 (ms)", f1(dl.EnqueueToStart.P99), f1(fl.EnqueueToStart.P99), f2(row.Ratios.EnqueueToStartP99))
		line(w, "acquire→start under load p50 (ms)", f2(dl.AcquireToStart.P50), f2(fl.AcquireToStart.P50), f2(ratio(dl.AcquireToStart.P50, fl.AcquireToStart.P50)))
		line(w, "acquire→start under load p99 (ms)", f2(dl.AcquireToStart.P99), f2(fl.AcquireToStart.P99), f2(ratio(dl.AcquireToStart.P99, fl.AcquireToStart.P99)))
		line(w, "cores used (runner)", f2(dl.CoresUsed), f2(fl.CoresUsed), "")
		line(w, "mock CPU per task (µs)", f1(dl.MockCPUPerTask), f1(fl.MockCPUPerTask), "")
		line(w, "cores used (mock)", f2(dl.MockCoresUsed), f2(fl.MockCoresUsed), "")
		line(w, "polls", fmt.Sprint(dl.Polls), fmt.Sprint(fl.Polls), "")
		if tm, ok := row.Results[targetDliteTmpfs]; ok {
			line(w, "spool on tmpfs: throughput (tasks/s)", f1(tm.TasksPerSecond), f1(fl.TasksPerSecond), f2(row.TmpfsRatios.Throughput))
			line(w, "spool on tmpfs: CPU per task (µs)", f1(tm.CPUPerTaskUs), f1(fl.CPUPerTaskUs), f2(row.TmpfsRatios.CPUPerTask))
		}
	}
	if dl, ok := r.Idle[targetDlite]; ok {
		fl := r.Idle[targetFloor]
		w := fmt.Sprint(dl.Workers)
		line(w, "idle RSS (MiB)", f1(dl.RSSMiB), f1(fl.RSSMiB), f2(ratio(dl.RSSMiB, fl.RSSMiB)))
		line(w, "idle CPU (% of a core)", f2(dl.CPUPercent), f2(fl.CPUPercent), f2(ratio(dl.CPUPercent, fl.CPUPercent)))
	}
	if dl, ok := r.Sleepers[targetDlite]; ok {
		fl := r.Sleepers[targetFloor]
		w := fmt.Sprint(dl.Tasks)
		line(w, "sleeping: RSS (MiB)", f1(dl.RSSMiB), f1(fl.RSSMiB), f2(ratio(dl.RSSMiB, fl.RSSMiB)))
		line(w, "sleeping: peak RSS (MiB)", f1(dl.PeakRSSMiB), f1(fl.PeakRSSMiB), f2(ratio(dl.PeakRSSMiB, fl.PeakRSSMiB)))
		line(w, "sleeping: CPU (% of a core)", f2(dl.CPUPercent), f2(fl.CPUPercent), f2(ratio(dl.CPUPercent, fl.CPUPercent)))
		line(w, "sleeping: ramp to all acquired (s)", f2(dl.RampSeconds), f2(fl.RampSeconds), f2(ratio(dl.RampSeconds, fl.RampSeconds)))
	}
	fmt.Fprintln(bw, "\ntargets:")
	for _, t := range r.Targets {
		mark := "MET"
		if !t.Met {
			mark = "NOT MET"
		}
		fmt.Fprintf(bw, "  %-60s %-16s %8.2f  %s\n", t.Name, t.Goal, t.Value, mark)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", n)
	}
	return bw.Flush()
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// cpuModel returns the processor's model name from /proc/cpuinfo, or "" when unknown.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}
