package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dlite-dev/dlite"
	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/mockmanager"
)

// dronePipeline is the demonstration's pipeline: the clone of a repository the demonstration
// makes, a build step whose output later steps read, two steps in parallel after it (one
// failing, with its failure ignored), a step after both, and one that runs only when the stage
// fails, so it is skipped.
const dronePipeline = `kind: pipeline
type: exec
name: default
steps:
- name: build
  commands:
  - echo building $DRONE_REPO at $DRONE_COMMIT_BRANCH
  - cat README 2>/dev/null || echo nothing was cloned
  - echo "version=1.4.2" > build.env
- name: unit-tests
  depends_on: [build]
  commands:
  - echo running the unit tests
  - sleep 1
  - echo 42 passed
- name: lint
  depends_on: [build]
  failure: ignore
  commands:
  - echo linting
  - 'echo "main.go:12: line too long"'
  - exit 1
- name: package
  depends_on: [unit-tests, lint]
  commands:
  - cat build.env
  - echo packaged with token $DEPLOY_TOKEN
  environment:
    DEPLOY_TOKEN:
      from_secret: deploy_token
- name: notify-failure
  depends_on: [package]
  when:
    status: [failure]
  commands:
  - echo the build failed
`

// droneDemo runs the runner as a Drone runner against an embedded mock Drone server on loopback,
// queues one build of dronePipeline, narrates its steps on stdout as the server sees them, prints
// their logs and stops by itself.
func droneDemo(ctx context.Context, cfg *dlite.Config, logger *slog.Logger, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "dlite run (drone demo): "+format+"\n", args...)
		return 1
	}
	ds, err := mockmanager.NewDrone(mockmanager.DroneOptions{Secret: randomHex(16), Logger: logger.With("component", "mock-drone"),
		PollTimeout: 5 * time.Second})
	if err != nil {
		return fail("%v", err)
	}
	running, err := ds.Start("127.0.0.1:0")
	if err != nil {
		return fail("start the mock Drone server: %v", err)
	}
	defer running.Close()
	spool, err := os.MkdirTemp("", "dlite-drone-demo-spool-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(spool)

	run := *cfg
	run.Drone.Host = strings.TrimPrefix(running.URL(), "http://")
	run.Drone.Proto, run.Drone.Secret, run.Drone.Type = "http", ds.Secret(), "exec"
	run.Drone.Capacity, run.ParallelWorkers = 1, 1
	// The runner under the demonstration is a plain Drone runner.
	run.Demo = ""
	run.SpoolDir, run.StateDir = spool, spool+"-stages"
	defer os.RemoveAll(run.StateDir)
	run.PollInterval = min(run.PollInterval, 200*time.Millisecond)
	run.HeartbeatInterval = min(run.HeartbeatInterval, 2*time.Second)
	if run.HTTPAddr != "" {
		run.HTTPAddr = "127.0.0.1:0"
	}
	r, err := dlite.New(dlite.Options{Config: &run, TaskServers: []dlite.TaskServer{dlite.BuiltinTasks()}, Logger: logger})
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "dlite demo: DLITE_DEMO=drone, so this runs as a Drone runner against an embedded mock Drone server at %s.\n", running.URL())
	nb := mockmanager.NewBuild{Yaml: dronePipeline, Stages: []mockmanager.NewStage{{Name: "default", Type: "exec"}},
		Secrets: []mockmanager.NewSecret{{Name: "deploy_token", Data: randomHex(8)}}}
	repo, err := os.MkdirTemp("", "dlite-drone-demo-repo-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(repo)
	first := "clone, build"
	if sha, err := demoRepository(ctx, repo); err != nil {
		// The clone step needs git on the host; without it the demonstration goes on without a clone.
		fmt.Fprintf(stdout, "dlite demo: no repository to clone (%v), so the pipeline says clone: {disable: true}.\n", err)
		nb.Yaml = strings.Replace(dronePipeline, "\nsteps:\n", "\nclone:\n  disable: true\nsteps:\n", 1)
		first = "build"
	} else {
		nb.Repo, nb.Ref, nb.After = mockmanager.NewRepo{GitHttpUrl: "file://" + repo}, "refs/heads/main", sha
		fmt.Fprintf(stdout, "dlite demo: the build's commit %.12s is in a git repository made for it at %s.\n", sha, repo)
	}
	fmt.Fprintf(stdout, "dlite demo: one build of an exec pipeline: %s, then unit-tests and lint in parallel (lint fails, failure: ignore), then package; notify-failure runs only on failure.\n\n", first)

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var runErr error
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		runErr = dlite.RunWithSignals(runCtx, r, run.ShutdownGrace)
	}()

	b, err := ds.QueueBuild(nb)
	code := 1
	if err != nil {
		fmt.Fprintf(stdout, "could not queue the build: %v\n", err)
	} else if st, ok := narrateDrone(ctx, ds, b.Build.Id, stdout, runDone); ok {
		printDroneLogs(stdout, st)
		if st.Build.Status == "success" {
			code = 0
			fmt.Fprintf(stdout, "\ndlite demo: build %d ended success, as expected; stopping the runner.\n", b.Build.Id)
		} else {
			fmt.Fprintf(stdout, "\ndlite demo: build %d ended %s, not success as expected; stopping the runner.\n", b.Build.Id, st.Build.Status)
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

// demoRepository makes a git repository in dir with one commit on main, for the demonstration's
// build to clone, and returns the commit. It fails when git is not installed.
func demoRepository(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return "", errors.New("git is not installed")
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("The demonstration's repository, as the clone step fetched it.\n"), 0o644); err != nil {
		return "", err
	}
	var out string
	for _, args := range [][]string{
		{"init", "-q"},
		{"symbolic-ref", "HEAD", "refs/heads/main"},
		{"add", "README"},
		{"commit", "-q", "-m", "Start the demonstration"},
		{"rev-parse", "HEAD"},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=dlite demo", "GIT_AUTHOR_EMAIL=demo@dlite.invalid",
			"GIT_COMMITTER_NAME=dlite demo", "GIT_COMMITTER_EMAIL=demo@dlite.invalid")
		b, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(b)))
		}
		out = strings.TrimSpace(string(b))
	}
	return out, nil
}

// narrateDrone prints each change of the build's stage and steps until the build is done, the
// runner stops or ctx ends.
func narrateDrone(ctx context.Context, ds *mockmanager.DroneServer, id int64, w io.Writer, runDone <-chan struct{}) (mockmanager.BuildState, bool) {
	fmt.Fprintf(w, "[queued]   build %d\n", id)
	shown := map[string]droneapi.Status{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := ds.Build(id)
		if err == nil {
			for _, st := range b.Stages {
				if st.Stage.Status != shown["stage"] {
					shown["stage"] = st.Stage.Status
					fmt.Fprintf(w, "[stage]    %-15s %s%s\n", st.Stage.Name, st.Stage.Status, machine(st.Stage))
				}
				for _, sp := range st.Steps {
					if sp.Step.Status == shown[sp.Step.Name] {
						continue
					}
					shown[sp.Step.Name] = sp.Step.Status
					line := fmt.Sprintf("[step]     %-15s %s", sp.Step.Name, sp.Step.Status)
					if sp.Step.Status != "running" && sp.Step.Status != "pending" && sp.Step.Status != "skipped" {
						line += fmt.Sprintf(" (exit %d)", sp.Step.ExitCode)
					}
					if sp.Step.Errignore && sp.Step.Status == "failure" {
						line += ", ignored: failure: ignore"
					}
					fmt.Fprintln(w, line)
				}
			}
			if b.Build.Status != "pending" && b.Build.Status != "running" {
				return b, true
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return mockmanager.BuildState{}, false
		case <-runDone:
			fmt.Fprintf(w, "\ndlite demo: the runner stopped before the build ended.\n")
			return mockmanager.BuildState{}, false
		}
	}
}

func machine(st droneapi.Stage) string {
	if st.Machine == "" {
		return ""
	}
	return " on " + st.Machine
}

// printDroneLogs prints each step's uploaded log, as the Drone server stored it.
func printDroneLogs(w io.Writer, b mockmanager.BuildState) {
	for _, st := range b.Stages {
		for _, sp := range st.Steps {
			if sp.Log == "" {
				continue
			}
			var lines []droneapi.Line
			if err := json.Unmarshal([]byte(sp.Log), &lines); err != nil {
				continue
			}
			fmt.Fprintf(w, "\n--- log of %s\n", sp.Step.Name)
			for _, l := range lines {
				fmt.Fprintf(w, "    %s", l.Out)
				if !strings.HasSuffix(l.Out, "\n") {
					fmt.Fprintln(w)
				}
			}
		}
	}
}
