package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

// demoTask is one task the demonstration feeds the runner, with what it shows.
type demoTask struct {
	what    string
	task    mockmanager.NewTask
	outcome string // the expected result code, printed next to the real one
}

// demo runs the runner against an embedded mock manager on loopback, feeds it a few example tasks,
// narrates each on stdout as it is queued, accepted and finished, and stops by itself.
func demo(ctx context.Context, cfg *dlite.Config, logger *slog.Logger, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "dlite run (demo): "+format+"\n", args...)
		return 1
	}
	// The demo's manager lives and dies with the process; so does its state.
	account, secret := "demo-account", randomHex(16)
	mm, err := mockmanager.New(mockmanager.Options{AccountID: account, AccountSecret: secret, Logger: logger.With("component", "mock-manager")})
	if err != nil {
		return fail("%v", err)
	}
	running, err := mm.Start("127.0.0.1:0")
	if err != nil {
		return fail("start the mock manager: %v", err)
	}
	defer running.Close()
	target, stopTarget, err := startDemoTarget()
	if err != nil {
		return fail("start the HTTP target: %v", err)
	}
	defer stopTarget()
	spool, err := os.MkdirTemp("", "dlite-demo-spool-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(spool)
	state, err := os.MkdirTemp("", "dlite-demo-stages-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(state)
	img, noImage := stageImage(ctx, cfg)
	stage := demoStage{id: "demo-stage-" + randomHex(4), logURL: running.LogServiceURL(), account: account, token: mm.LogToken(), image: img}

	run := *cfg
	run.ManagerEndpoint = running.URL()
	run.AccountID = account
	run.AccountSecret = secret
	run.SpoolDir = spool
	run.StateDir = state
	run.PollInterval = min(run.PollInterval, 200*time.Millisecond)
	run.HeartbeatInterval = min(run.HeartbeatInterval, 2*time.Second)
	if run.HTTPAddr != "" {
		// Any free port: the demo must not fail because a runner already holds the default one.
		run.HTTPAddr = "127.0.0.1:0"
	}
	r, err := dlite.New(dlite.Options{Config: &run, TaskServers: []dlite.TaskServer{dlite.BuiltinTasks()}, CITasks: true, Logger: logger})
	if err != nil {
		return fail("%v", err)
	}

	total := len(demoTasks(target)) + len(stage.tasks())
	fmt.Fprintf(stdout, "dlite demo: no manager configured (DLITE_MANAGER_ENDPOINT is empty), so this runs against an embedded mock manager at %s.\n", running.URL())
	fmt.Fprintf(stdout, "dlite demo: the runner supports %s; it will get %d example tasks and stop by itself (Ctrl-C stops it sooner).\n",
		strings.Join(r.TaskTypes(), ", "), total)
	if url := r.StatusURL(); url != "" {
		fmt.Fprintf(stdout, "dlite demo: while it runs, its status page is at %s and its metrics at %smetrics.\n", url, url)
	}
	fmt.Fprintln(stdout)

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var runErr error
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		runErr = dlite.RunWithSignals(runCtx, r, run.ShutdownGrace)
	}()

	finished, unexpected, ok := narrate(ctx, mm, demoTasks(target), stdout, runDone)
	if ok {
		fmt.Fprintf(stdout, "\ndlite demo: now a Harness CI stage %s, one task after the other as the manager sends them; the step logs are read back from the mock log service.\n", stage.id)
		if img == "" {
			fmt.Fprintf(stdout, "dlite demo: no container step (%s): it ran host steps only.\n", noImage)
		}
		n, bad, err := stage.run(ctx, mm, stdout, runDone)
		finished, unexpected = finished+n, unexpected+bad
		if err != nil {
			fmt.Fprintf(stdout, "\ndlite demo: %v\n", err)
			ok = false
		}
	}
	code := 1
	if ok && finished == total {
		fmt.Fprintf(stdout, "\ndlite demo: all %d tasks finished (%d as expected); stopping the runner.\n", finished, finished-unexpected)
		if unexpected == 0 {
			code = 0
		}
	}

	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.Shutdown(shutdown)
	<-runDone
	if runErr != nil {
		return fail("runner: %v", runErr)
	}
	return code
}

func demoTasks(target string) []demoTask {
	raw := func(v any) *json.RawMessage {
		b, _ := json.Marshal(v)
		m := json.RawMessage(b)
		return &m
	}
	timeout := func(s int64) *int64 { return &s }
	yes := true
	return []demoTask{
		{"a shell script that exports a variable", mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK", Timeout: timeout(30),
			Data: raw(map[string]any{"script": "echo \"hello from $(uname -s)\"\nGREETING=hi", "outputVars": []string{"GREETING"}})}, "OK"},
		{"an HTTP request to a loopback endpoint", mockmanager.NewTask{Type: "HTTP_TASK", Timeout: timeout(30), RunnerResponse: &yes,
			Data: raw(map[string]any{"url": target + "/health", "expectedStatus": []int{200}})}, "OK"},
		{"a script that fails on purpose", mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK", Timeout: timeout(30),
			Data: raw(map[string]any{"script": "echo 'about to fail' >&2\nexit 3"})}, "FAILED"},
		{"a script that outlives its 1s timeout", mockmanager.NewTask{Type: "SHELL_SCRIPT_TASK", Timeout: timeout(1), RunnerResponse: &yes,
			Data: raw(map[string]any{"script": "sleep 30"})}, "TIMEOUT"},
		{"a task whose data breaks the task spec", mockmanager.NewTask{Type: "HTTP_TASK", Timeout: timeout(30),
			Data: raw(map[string]any{"method": "GET"})}, "FAILED"},
	}
}

// narrate enqueues the tasks and prints each change of state until all are done, the runner stops
// or ctx ends. It returns how many finished, how many of those not as expected, and whether all
// finished.
func narrate(ctx context.Context, mm *mockmanager.Server, list []demoTask, w io.Writer, runDone <-chan struct{}) (finished, unexpected int, ok bool) {
	ids := make([]string, len(list))
	for i, dt := range list {
		id, err := mm.Enqueue(dt.task)
		if err != nil {
			fmt.Fprintf(w, "could not enqueue %s: %v\n", dt.what, err)
			return 0, 0, false
		}
		ids[i] = id
		fmt.Fprintf(w, "[queued]   %s  %-17s  %s\n", id, dt.task.Type, dt.what)
	}
	shown := make([]mockmanager.TaskState, len(list))
	for i := range shown {
		shown[i] = mockmanager.StateQueued
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		finished, unexpected = 0, 0
		for i, id := range ids {
			st, err := mm.Task(id)
			if err != nil {
				continue
			}
			if st.State != mockmanager.StateQueued && shown[i] == mockmanager.StateQueued {
				fmt.Fprintf(w, "[accepted] %s  acquired by runner %s, running\n", id, deref(st.AcquiredBy))
				shown[i] = mockmanager.StateAcquired
			}
			if len(st.Responses) > 0 {
				if shown[i] != mockmanager.StateDone {
					printResult(w, id, list[i], st.Responses[0])
					shown[i] = mockmanager.StateDone
				}
				finished++
				if st.Responses[0].Code != list[i].outcome {
					unexpected++
				}
			}
		}
		if finished == len(ids) {
			return finished, unexpected, true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return finished, unexpected, false
		case <-runDone:
			fmt.Fprintf(w, "\ndlite demo: the runner stopped before every task finished.\n")
			return finished, unexpected, false
		}
	}
}

func printResult(w io.Writer, id string, dt demoTask, r mockmanager.RecordedResponse) {
	fmt.Fprintf(w, "[finished] %s  %-7s (expected %s) via the %s endpoint", id, r.Code, dt.outcome, r.Endpoint)
	if r.Error != nil && *r.Error != "" {
		fmt.Fprintf(w, "  error: %s", *r.Error)
	}
	if r.Data != nil {
		data := string(*r.Data)
		if len(data) > 160 {
			data = data[:160] + "…"
		}
		fmt.Fprintf(w, "\n           output: %s", data)
	}
	fmt.Fprintln(w)
}

// startDemoTarget serves the endpoint the demo's HTTP task calls.
func startDemoTarget() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"healthy"}`)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
