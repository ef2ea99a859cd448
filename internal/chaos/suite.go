package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/mockmanager"
)

// Config describes one chaos run. The zero value of a field means its default.
type Config struct {
	// Binary is the dlite binary to run; it is built into WorkDir when empty.
	Binary string
	// Race builds the binary with the race detector (when Binary is empty).
	Race bool
	// WorkDir holds the spool directories and the built binary. Required.
	WorkDir string
	// Tasks is how many tasks are submitted. Default 2000.
	Tasks int
	// Runners is how many runner processes share the manager. Default 2.
	Runners int
	// Workers is each runner's DLITE_PARALLEL_WORKERS. Default 16.
	Workers int
	// ShellShare is the share of SHELL_SCRIPT_TASKs among the tasks; the rest are SLEEP_TASKs.
	// Default 0.05; negative means none.
	ShellShare float64
	// MaxSleep bounds the random wait of each SLEEP_TASK. Default 200ms.
	MaxSleep time.Duration
	// SubmitRate is how many tasks are submitted per second. Default 150.
	SubmitRate int
	// ErrorRate, ResetRate and MaxLatency are the mock manager's faults: the share of calls
	// answered 503, the share whose connection is reset, and the upper bound of the random delay
	// of each call. Defaults 0.2, 0.1 and 100ms; negative means none.
	ErrorRate, ResetRate float64
	MaxLatency           time.Duration
	// LostAnswers is the share of calls the manager acts on whose answer the runner never gets
	// (the connection is reset after the manager answered). Default 0.02; negative means none.
	LostAnswers float64
	// DelegateTimeout is how long the manager waits for a silent delegate before its unanswered
	// tasks go back to the queue. Default 8s.
	DelegateTimeout time.Duration
	// PollInterval and HeartbeatInterval are the runners' intervals. Defaults 50ms and 1s.
	PollInterval, HeartbeatInterval time.Duration
	// KillAt is the share of tasks submitted when the first runner is killed with SIGKILL.
	// Default 0.5; negative means no kill.
	KillAt float64
	// RestartAfter is how long the killed runner stays down. Default 1s.
	RestartAfter time.Duration
	// LoseAcquiresFor, when positive, is how long every acquire answer is lost (the manager grants
	// or refuses each acquire, and the runner hears nothing) from the moment LoseAcquiresAt of the
	// tasks are submitted. A runner must keep asking until it hears, however long that takes.
	LoseAcquiresFor time.Duration
	// LoseAcquiresAt is the share of tasks submitted when acquire answers start being lost.
	// Default 0.3.
	LoseAcquiresAt float64
	// RestartAt, when positive, is the share of tasks submitted when the manager restarts empty
	// (or, if later, the moment every runner has registered): it is unreachable for RestartDown,
	// then comes back having forgotten every delegate (its tasks stay). Default 0: no restart.
	RestartAt float64
	// RestartDown is how long the restarting manager is unreachable. Default 3s.
	RestartDown time.Duration
	// Deadline bounds the whole run. Default 5m.
	Deadline time.Duration
	// LogLevel is the runners' DLITE_LOG_LEVEL. Default info.
	LogLevel string
	// Progress, when set, receives a line about the run every few seconds.
	Progress io.Writer
}

func (c *Config) defaults() error {
	if c.WorkDir == "" {
		return errors.New("chaos: WorkDir is required")
	}
	setInt(&c.Tasks, 2000)
	setInt(&c.Runners, 2)
	setInt(&c.Workers, 16)
	setInt(&c.SubmitRate, 150)
	setFloat(&c.ShellShare, 0.05)
	setFloat(&c.ErrorRate, 0.2)
	setFloat(&c.ResetRate, 0.1)
	setFloat(&c.LostAnswers, 0.02)
	setFloat(&c.KillAt, 0.5)
	setFloat(&c.LoseAcquiresAt, 0.3)
	setDuration(&c.RestartDown, 3*time.Second)
	setDuration(&c.MaxSleep, 200*time.Millisecond)
	setDuration(&c.MaxLatency, 100*time.Millisecond)
	setDuration(&c.DelegateTimeout, 8*time.Second)
	setDuration(&c.PollInterval, 50*time.Millisecond)
	setDuration(&c.HeartbeatInterval, time.Second)
	setDuration(&c.RestartAfter, time.Second)
	setDuration(&c.Deadline, 5*time.Minute)
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

func setInt(v *int, def int) {
	if *v <= 0 {
		*v = def
	}
}

func setFloat(v *float64, def float64) {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		*v = 0
	}
}

func setDuration(v *time.Duration, def time.Duration) {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		*v = 0
	}
}

// Report is what a chaos run found.
type Report struct {
	Config Config
	// Submitted counts the tasks queued; Shell how many of them were SHELL_SCRIPT_TASKs.
	Submitted, Shell int
	// ExactlyOnce counts the tasks with exactly one recorded result.
	ExactlyOnce int
	// Duplicates counts the tasks with more than one recorded result, whatever their origin.
	Duplicates int
	// DuplicateDeliveries counts the tasks whose extra results all repeat one execution's result
	// (a report whose answer was lost, or a spooled result sent again after a restart).
	DuplicateDeliveries int
	// Lost counts the tasks without any result at the end.
	Lost int
	// DuplicateExecutions counts the tasks that ran to completion more than once: their handler
	// returned and their result was stored (logged as "task finished") by two or more runner
	// registrations, or results came from two or more delegates. A task whose holder was killed
	// mid-run and that then ran elsewhere was completed once, so it is not counted.
	DuplicateExecutions int
	// DuplicateIDs lists the tasks counted in DuplicateExecutions.
	DuplicateIDs []string
	// LostIDs lists the tasks counted in Lost.
	LostIDs []string
	// NotOK counts the tasks whose first result was not OK (every submitted task should succeed).
	NotOK int
	// Requeued counts the tasks acquired more than once (their holder was lost).
	Requeued int
	// Conflicts counts acquire calls refused because another delegate held the task.
	Conflicts int
	// Kills and Starts count the SIGKILLs sent and the runner processes started.
	Kills, Starts int
	// Restarts counts the times the manager restarted empty.
	Restarts int
	// Registrations counts the delegates the manager saw register.
	Registrations int
	// LostLogLines counts runner log lines that declare a result lost.
	LostLogLines int
	// RaceReports counts "WARNING: DATA RACE" in the runners' output.
	RaceReports int
	// StopErrors are the runners that did not stop cleanly at the end: one that crashed, or that
	// did not stop within 20s of SIGTERM.
	StopErrors []string
	// Calls is what the proxy saw.
	Calls Counts
	// DeadlineExceeded says the run was cut short by Config.Deadline.
	DeadlineExceeded bool
	// Wall is how long the run took.
	Wall time.Duration
}

// OK reports whether the run passed: nothing lost, nothing executed twice, no data race, every
// runner stopped cleanly, and the run ended within its deadline.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.DuplicateExecutions == 0 && r.RaceReports == 0 && len(r.StopErrors) == 0 && !r.DeadlineExceeded
}

// Print writes the report's figures.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	latency, kill := "no latency", "no kill"
	if c.MaxLatency > 0 {
		latency = "0-" + c.MaxLatency.String() + " latency"
	}
	if c.KillAt > 0 {
		kill = fmt.Sprintf("one runner killed at %.0f%%", c.KillAt*100)
	}
	fmt.Fprintf(w, "chaos: %d runners x %d workers; faults: %.0f%% 503, %.0f%% resets, %s, %.0f%% lost answers; delegate timeout %s; %s\n",
		c.Runners, c.Workers, c.ErrorRate*100, c.ResetRate*100, latency, c.LostAnswers*100, c.DelegateTimeout, kill)
	if c.LoseAcquiresFor > 0 {
		fmt.Fprintf(w, "  every acquire answer lost for %s from %.0f%% of the tasks\n", c.LoseAcquiresFor, c.LoseAcquiresAt*100)
	}
	if c.RestartAt > 0 {
		fmt.Fprintf(w, "  manager down %s at %.0f%% of the tasks, then back having forgotten every delegate\n", c.RestartDown, c.RestartAt*100)
	}
	fmt.Fprintf(w, "  tasks submitted                        %6d (%d SHELL_SCRIPT_TASK)\n", r.Submitted, r.Shell)
	fmt.Fprintf(w, "  tasks with exactly one result          %6d\n", r.ExactlyOnce)
	fmt.Fprintf(w, "  duplicates (more than one result)      %6d\n", r.Duplicates)
	fmt.Fprintf(w, "    of which duplicate deliveries        %6d\n", r.DuplicateDeliveries)
	fmt.Fprintf(w, "  lost (no result)                       %6d\n", r.Lost)
	fmt.Fprintf(w, "  duplicate executions                   %6d\n", r.DuplicateExecutions)
	fmt.Fprintf(w, "  results not OK                         %6d\n", r.NotOK)
	fmt.Fprintf(w, "  tasks re-queued after a lost holder    %6d\n", r.Requeued)
	fmt.Fprintf(w, "  acquire conflicts                      %6d\n", r.Conflicts)
	fmt.Fprintf(w, "  runner starts / SIGKILLs               %6d / %d\n", r.Starts, r.Kills)
	fmt.Fprintf(w, "  manager restarts (empty)               %6d\n", r.Restarts)
	fmt.Fprintf(w, "  delegate registrations                 %6d\n", r.Registrations)
	fmt.Fprintf(w, "  runner log lines declaring a loss      %6d\n", r.LostLogLines)
	fmt.Fprintf(w, "  data races reported                    %6d\n", r.RaceReports)
	fmt.Fprintf(w, "  manager calls seen / answers dropped   %6d / %d\n", sum(r.Calls.Seen), sum(r.Calls.Lost))
	for _, op := range []Op{OpRegister, OpHeartbeat, OpPoll, OpAcquire, OpReport} {
		fmt.Fprintf(w, "    %-10s                           %6d / %d\n", op, r.Calls.Seen[op], r.Calls.Lost[op])
	}
	if len(r.LostIDs) > 0 {
		fmt.Fprintf(w, "  lost tasks: %v\n", head(r.LostIDs, 20))
	}
	if len(r.DuplicateIDs) > 0 {
		fmt.Fprintf(w, "  tasks executed twice: %v\n", head(r.DuplicateIDs, 20))
	}
	for _, e := range r.StopErrors {
		fmt.Fprintf(w, "  stop: %s\n", e)
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = "FAIL"
	}
	deadline := ""
	if r.DeadlineExceeded {
		deadline = fmt.Sprintf(" (deadline of %s exceeded)", c.Deadline)
	}
	fmt.Fprintf(w, "  wall time                              %s%s\n", r.Wall.Round(10*time.Millisecond), deadline)
	fmt.Fprintf(w, "chaos: %s\n", verdict)
}

func sum(m map[Op]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func head(ids []string, n int) []string {
	if len(ids) <= n {
		return ids
	}
	return append(slices.Clone(ids[:n]), fmt.Sprintf("... %d more", len(ids)-n))
}

// run is the state of one chaos run.
type run struct {
	cfg     Config
	account string
	secret  string
	proxy   *Proxy
	mm      *mockmanager.Server

	mu     sync.Mutex
	procs  []*Process // every process started, in order
	live   []*Process // the current process of each runner slot
	starts []int      // how often each slot was started
	kills  int
	// restarts counts the manager's restarts.
	restarts int
}

// Run runs the suite: a mock manager with faults behind a Proxy, Config.Runners dlite processes
// taking Config.Tasks tasks from it, one of them killed with SIGKILL and restarted midway, and,
// when configured, every acquire answer lost for a while or the manager restarting empty. It
// returns the figures; err is only for a run that could not be set up. ctx cancels the run early
// (its figures are then reported as far as they go).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		bin, err := Build(ctx, cfg.WorkDir, cfg.Race)
		if err != nil {
			return nil, err
		}
		cfg.Binary = bin
	}
	began := time.Now()
	r := &run{cfg: cfg, account: "chaos-account", secret: randomHex(16)}
	mm, err := mockmanager.New(mockmanager.Options{
		AccountID:       r.account,
		AccountSecret:   r.secret,
		DelegateTimeout: cfg.DelegateTimeout,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	r.mm = mm
	served, err := mm.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer served.Close()
	if r.proxy, err = NewProxy(served.URL()); err != nil {
		return nil, err
	}
	defer r.proxy.Close()
	r.proxy.SetLostAnswers(cfg.LostAnswers)
	if err := mm.SetFaults(mockmanager.Faults{
		ErrorRate: new(float32(cfg.ErrorRate)),
		ResetRate: new(float32(cfg.ResetRate)),
		LatencyMs: new(int(cfg.MaxLatency / time.Millisecond)),
	}); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	r.live = make([]*Process, cfg.Runners)
	r.starts = make([]int, cfg.Runners)
	for i := range cfg.Runners {
		if err := r.start(i); err != nil {
			r.stopAll(time.Second)
			return nil, err
		}
	}

	rep := &Report{Config: cfg}
	ids, killErr := r.submit(runCtx, rep)
	if killErr != nil {
		fmt.Fprintf(cfg.Progress, "chaos: %v\n", killErr)
	}
	r.awaitAnswers(runCtx, ids)
	rep.DeadlineExceeded = runCtx.Err() != nil && ctx.Err() == nil

	// Quiet the manager, then stop the runners gracefully so what they still hold (a duplicate
	// delivery in flight, say) reaches the manager and is counted.
	_ = mm.SetFaults(mockmanager.Faults{})
	r.proxy.SetLostAnswers(0)
	r.proxy.SetMode(Pass)
	for _, e := range r.stopAll(20 * time.Second) {
		rep.StopErrors = append(rep.StopErrors, e.Error())
	}
	r.tally(rep, ids)
	if err := writeOutputs(cfg.WorkDir, r.procs); err != nil {
		fmt.Fprintf(cfg.Progress, "chaos: keep runner logs: %v\n", err)
	}
	rep.Wall = time.Since(began)
	return rep, nil
}

func (r *run) env(slot int) map[string]string {
	return map[string]string{
		"DLITE_MANAGER_ENDPOINT":        r.proxy.URL(),
		"DLITE_ACCOUNT_ID":              r.account,
		"DLITE_ACCOUNT_SECRET":          r.secret,
		"DLITE_NAME":                    fmt.Sprintf("chaos-runner-%d", slot),
		"DLITE_PARALLEL_WORKERS":        strconv.Itoa(r.cfg.Workers),
		"DLITE_POLL_INTERVAL_MILLISECS": strconv.FormatInt(r.cfg.PollInterval.Milliseconds(), 10),
		"DLITE_HEARTBEAT_INTERVAL":      r.cfg.HeartbeatInterval.String(),
		"DLITE_SPOOL_DIR":               filepath.Join(r.cfg.WorkDir, fmt.Sprintf("spool-%d", slot)),
		"DLITE_SHUTDOWN_GRACE":          "10s",
		"DLITE_LOG_FORMAT":              "json",
		"DLITE_LOG_LEVEL":               r.cfg.LogLevel,
		"DLITE_HTTP_ADDR":               "off",
	}
}

// start starts the runner of a slot (again, after a kill: same name, same spool directory).
func (r *run) start(slot int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts[slot]++
	p, err := Start(fmt.Sprintf("runner-%d#%d", slot, r.starts[slot]), r.cfg.Binary, []string{"run"}, r.env(slot))
	if err != nil {
		return err
	}
	r.procs = append(r.procs, p)
	r.live[slot] = p
	return nil
}

// kill SIGKILLs the runner of a slot and starts it again after RestartAfter.
func (r *run) kill(ctx context.Context, slot int) error {
	r.mu.Lock()
	p := r.live[slot]
	r.kills++
	r.mu.Unlock()
	p.Kill()
	fmt.Fprintf(r.cfg.Progress, "chaos: killed %s (SIGKILL); restarting it in %s\n", p.Name, r.cfg.RestartAfter)
	t := time.NewTimer(r.cfg.RestartAfter)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.start(slot)
}

// loseAcquires drops every acquire answer for LoseAcquiresFor (or until ctx ends).
func (r *run) loseAcquires(ctx context.Context) {
	r.proxy.SetMode(Lose, OpAcquire)
	fmt.Fprintf(r.cfg.Progress, "chaos: losing every acquire answer for %s\n", r.cfg.LoseAcquiresFor)
	t := time.NewTimer(r.cfg.LoseAcquiresFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	r.proxy.SetMode(Pass, OpAcquire)
	fmt.Fprintf(r.cfg.Progress, "chaos: acquire answers get through again\n")
}

// registered counts the delegates whose registration the runner completed (capacity recorded).
func (r *run) registered() int {
	n := 0
	for _, d := range r.mm.Delegates() {
		if d.Capacity != nil {
			n++
		}
	}
	return n
}

// awaitRegistered waits until the manager counts n completed registrations, or ctx ends.
func (r *run) awaitRegistered(ctx context.Context, n int) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for r.registered() < n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// restartEmpty takes the manager away for RestartDown and brings it back having forgotten every
// delegate, as a manager restarted without its registrations.
func (r *run) restartEmpty(ctx context.Context) error {
	// A restart before the runners registered would find nothing to forget. A runner has
	// registered once the manager holds its capacity too: a restart between the two calls leaves
	// it still registering, with its start-up backoff, rather than forgotten.
	if err := r.awaitRegistered(ctx, r.cfg.Runners); err != nil {
		return err
	}
	before := r.registered()
	r.proxy.Down()
	fmt.Fprintf(r.cfg.Progress, "chaos: manager down for %s; it comes back having forgotten every runner\n", r.cfg.RestartDown)
	t := time.NewTimer(r.cfg.RestartDown)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	r.mm.ForgetDelegates()
	r.mu.Lock()
	r.restarts++
	r.mu.Unlock()
	if err := r.proxy.Up(); err != nil {
		return fmt.Errorf("restart the manager: %w", err)
	}
	// The scenario is over once every runner has registered again (the forgotten delegates stay
	// listed, so each new registration adds one): when the tasks were all done before the restart,
	// the run would otherwise end before the runners' next heartbeat could find they were gone.
	return r.awaitRegistered(ctx, before+r.cfg.Runners)
}

func (r *run) stopAll(timeout time.Duration) []error {
	r.mu.Lock()
	live := slices.Clone(r.live)
	r.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(live))
	for i, p := range live {
		if p == nil {
			continue
		}
		wg.Go(func() { errs[i] = p.Stop(timeout) })
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}

// submit queues the tasks at SubmitRate and kills the first runner once KillAt of them are in.
// It returns the ids of the tasks and, once the killed runner is up again, how the kill went.
func (r *run) submit(ctx context.Context, rep *Report) (ids []string, killErr error) {
	rng := mathrand.New(mathrand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	at := func(share float64) int {
		if share <= 0 {
			return -1
		}
		return int(float64(r.cfg.Tasks) * share)
	}
	killAt, restartAt, loseAt := at(r.cfg.KillAt), at(r.cfg.RestartAt), -1
	if r.cfg.LoseAcquiresFor > 0 {
		loseAt = at(r.cfg.LoseAcquiresAt)
	}
	var killDone sync.WaitGroup
	defer killDone.Wait()
	interval := time.Second / time.Duration(r.cfg.SubmitRate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	ids = make([]string, 0, r.cfg.Tasks)
	lastProgress := time.Now()
	for i := range r.cfg.Tasks {
		if i == killAt {
			killDone.Go(func() { killErr = r.kill(ctx, 0) })
		}
		if i == loseAt {
			killDone.Go(func() { r.loseAcquires(ctx) })
		}
		if i == restartAt {
			killDone.Go(func() {
				if err := r.restartEmpty(ctx); err != nil {
					fmt.Fprintf(r.cfg.Progress, "chaos: %v\n", err)
				}
			})
		}
		task, shell := r.newTask(rng, i)
		id, err := r.mm.Enqueue(task)
		if err != nil {
			// The task is valid by construction: only a broken mock gets here.
			fmt.Fprintf(r.cfg.Progress, "chaos: enqueue: %v\n", err)
			continue
		}
		ids = append(ids, id)
		rep.Submitted++
		if shell {
			rep.Shell++
		}
		if time.Since(lastProgress) > 5*time.Second {
			lastProgress = time.Now()
			r.progress(ids)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			// The named results are read after the deferred wait for the kill.
			return
		}
	}
	return
}

func (r *run) newTask(rng *mathrand.Rand, n int) (mockmanager.NewTask, bool) {
	var data any
	typ, shell := "SLEEP_TASK", rng.Float64() < r.cfg.ShellShare
	if shell {
		typ = "SHELL_SCRIPT_TASK"
		data = map[string]any{"script": fmt.Sprintf("echo chaos task %d", n)}
	} else {
		data = map[string]any{"milliseconds": rng.Int64N(r.cfg.MaxSleep.Milliseconds() + 1)}
	}
	raw, _ := json.Marshal(data) // a map of strings and numbers always marshals
	msg := json.RawMessage(raw)
	return mockmanager.NewTask{
		Type:           typ,
		Data:           &msg,
		Timeout:        new(int64(60)),
		RunnerResponse: new(n%2 == 1), // both result endpoints in the mix
	}, shell
}

func (r *run) progress(ids []string) {
	answered := 0
	for _, id := range ids {
		if st, err := r.mm.Task(id); err == nil && len(st.Responses) > 0 {
			answered++
		}
	}
	fmt.Fprintf(r.cfg.Progress, "chaos: %d tasks submitted, %d answered\n", len(ids), answered)
}

// awaitAnswers waits until every task has a result or ctx ends.
func (r *run) awaitAnswers(ctx context.Context, ids []string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastProgress := time.Now()
	pending := slices.Clone(ids)
	for {
		pending = slices.DeleteFunc(pending, func(id string) bool {
			st, err := r.mm.Task(id)
			return err == nil && len(st.Responses) > 0
		})
		if len(pending) == 0 {
			return
		}
		if time.Since(lastProgress) > 5*time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(r.cfg.Progress, "chaos: %d of %d tasks still without a result\n", len(pending), len(ids))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// tally fills the report from the manager's records and the runners' logs.
func (r *run) tally(rep *Report, ids []string) {
	r.mu.Lock()
	procs := slices.Clone(r.procs)
	rep.Kills = r.kills
	rep.Restarts = r.restarts
	r.mu.Unlock()
	rep.Starts = len(procs)
	rep.Registrations = len(r.mm.Delegates())
	rep.Calls = r.proxy.Counts()

	// finishedBy[task] is the set of runner processes that logged the task finished: its handler
	// returned and its result was spooled. One process runs a task at most once.
	finishedBy := map[string]map[string]bool{}
	for _, p := range procs {
		out := p.Output()
		rep.RaceReports += bytes.Count(out, []byte("WARNING: DATA RACE"))
		for _, rec := range Records(out) {
			if strings.Contains(rec.Msg, "result LOST") {
				rep.LostLogLines++
			}
			if rec.Msg == "task finished" && rec.TaskID != "" {
				if finishedBy[rec.TaskID] == nil {
					finishedBy[rec.TaskID] = map[string]bool{}
				}
				finishedBy[rec.TaskID][p.Name] = true
			}
		}
	}

	for _, id := range ids {
		st, err := r.mm.Task(id)
		if err != nil {
			continue
		}
		rep.Conflicts += st.Conflicts
		v := judge(st, len(finishedBy[id]))
		if v.requeued {
			rep.Requeued++
		}
		switch {
		case v.lost:
			rep.Lost++
			rep.LostIDs = append(rep.LostIDs, id)
		case v.duplicate:
			rep.Duplicates++
		default:
			rep.ExactlyOnce++
		}
		if v.duplicateDelivery {
			rep.DuplicateDeliveries++
		}
		if v.notOK {
			rep.NotOK++
		}
		if v.duplicateExecution {
			rep.DuplicateExecutions++
			rep.DuplicateIDs = append(rep.DuplicateIDs, id)
		}
	}
}

// verdict is what one task's record says.
type verdict struct {
	lost, duplicate, duplicateDelivery, duplicateExecution, notOK, requeued bool
}

// judge reads a task's record at the manager, and finishers, the number of runner processes that
// logged it finished. Results are told apart by the delegate that sent them: one registration
// runs a task at most once (its runner remembers what it ran), so results from two delegates are
// two executions, while two results from one delegate are one result delivered twice.
func judge(st mockmanager.TaskStatus, finishers int) verdict {
	delegates := map[string]bool{}
	for _, resp := range st.Responses {
		if resp.DelegateId != nil {
			delegates[*resp.DelegateId] = true
		}
	}
	n := len(st.Responses)
	return verdict{
		lost:               n == 0,
		duplicate:          n > 1,
		duplicateDelivery:  n > 1 && len(delegates) == 1,
		duplicateExecution: len(delegates) > 1 || finishers > 1,
		notOK:              n > 0 && st.Responses[0].Code != "OK",
		requeued:           st.Acquisitions > 1,
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeOutputs writes each runner process's output to dir as <name>.log, for the diagnosis of
// a run.
func writeOutputs(dir string, procs []*Process) error {
	var errs []error
	for _, p := range procs {
		errs = append(errs, os.WriteFile(filepath.Join(dir, p.Name+".log"), p.Output(), 0o600))
	}
	return errors.Join(errs...)
}
