package drone_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/host"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/mockmanager"
	"github.com/dlite-dev/dlite/tasks"
	tasksdrone "github.com/dlite-dev/dlite/tasks/drone"
)

// rig is a Drone stage handler over a host-only engine, against a mock Drone server, with the
// Drone backend to take stages and deliver reports the way the runtime does.
type rig struct {
	ds      *mockmanager.DroneTestServer
	backend *drone.Backend
	handler *tasksdrone.Handler
}

// newRig makes a rig; each option may change the handler's options, its engine among them.
func newRig(t *testing.T, options ...func(*tasksdrone.Options)) *rig {
	t.Helper()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 200 * time.Millisecond})
	client, err := drone.New(drone.Options{Endpoint: ds.URL, Secret: ds.Secret()})
	require.NoError(t, err)
	t.Cleanup(client.CloseIdleConnections)
	b, err := drone.NewBackend(drone.BackendOptions{Client: client, Machine: "runner-1",
		Filter: drone.Filter{Kind: "pipeline", Type: "exec", Os: "linux", Arch: "amd64"}})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	dir := t.TempDir()
	store, err := engine.NewFileStore(filepath.Join(dir, "records"))
	require.NoError(t, err)
	logs := tasksdrone.NewLogs(client, b)
	// Each test's mock server numbers its stages from 1: a runner id of its own keeps the engines of
	// tests running in parallel from taking each other's processes for their own.
	runnerID := strings.ReplaceAll(t.Name(), "/", "-")
	eng, err := engine.New(engine.Options{Store: store, Host: host.New(host.Options{RunnerID: runnerID}), RunnerID: runnerID,
		StateDir: filepath.Join(dir, "state"), Logs: logstream.Registry{tasksdrone.LogKind: logs}})
	require.NoError(t, err)
	opts := tasksdrone.Options{Engine: eng, Logs: logs}
	for _, o := range options {
		o(&opts)
	}
	h, err := tasksdrone.New(opts)
	require.NoError(t, err)
	return &rig{ds: ds, backend: b, handler: h}
}

// take queues a build of yaml and acquires its stage.
func (r *rig) take(t *testing.T, yaml string, secrets ...mockmanager.NewSecret) (drone.StageTask, string) {
	t.Helper()
	return r.takeBuild(t, mockmanager.NewBuild{Yaml: yaml, Secrets: secrets})
}

// takeBuild queues nb, with one exec stage named default, and acquires that stage.
func (r *rig) takeBuild(t *testing.T, nb mockmanager.NewBuild) (drone.StageTask, string) {
	t.Helper()
	nb.Stages = []mockmanager.NewStage{{Name: "default", Type: "exec"}}
	_, err := r.ds.QueueBuild(nb)
	require.NoError(t, err)
	ev, err := r.backend.Offer(t.Context(), "runner-1")
	require.NoError(t, err)
	require.NotNil(t, ev)
	task, err := r.backend.Acquire(t.Context(), "runner-1", ev.TaskID)
	require.NoError(t, err)
	var st drone.StageTask
	require.NoError(t, json.Unmarshal(task.Data, &st))
	return st, ev.TaskID
}

// run runs the stage as the runtime does: the handler's updates are delivered to the backend in
// their order (here at once, in the handler's goroutine).
func (r *rig) run(ctx context.Context, t *testing.T, taskID string, task drone.StageTask) drone.StageReport {
	t.Helper()
	n := 0
	ctx = tasks.WithUpdates(ctx, func(data json.RawMessage) error {
		n++
		if err := r.backend.Report(context.WithoutCancel(ctx), manager.Result{TaskID: taskID, Update: n, Data: data}); err != nil {
			t.Errorf("update %d of stage %s not delivered: %v", n, taskID, err)
		}
		return nil
	})
	return r.handler.Run(ctx, task)
}

// deliver reports the handler's answer as the runtime does, and returns the stage as stored.
func (r *rig) deliver(t *testing.T, taskID string, rep drone.StageReport) mockmanager.StageState {
	t.Helper()
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	require.NoError(t, r.backend.Report(t.Context(), manager.Result{TaskID: taskID, Code: manager.CodeOK, Data: data}))
	id, _ := strconv.ParseInt(taskID, 10, 64)
	st, err := r.ds.Stage(id)
	require.NoError(t, err)
	return st
}

func steps(st mockmanager.StageState) map[string]mockmanager.StepState {
	out := map[string]mockmanager.StepState{}
	for _, s := range st.Steps {
		out[s.Step.Name] = s
	}
	return out
}

// logText is the text of a step's uploaded log.
func logText(t *testing.T, s mockmanager.StepState) string {
	t.Helper()
	var lines []drone.Line
	require.NoError(t, json.Unmarshal([]byte(s.Log), &lines), "the uploaded log is the lines' JSON")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Out)
	}
	return b.String()
}

func TestExecPipelineRunsInDependencyOrder(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const yaml = `kind: pipeline
type: exec
name: default
clone:
  disable: true
steps:
- name: first
  commands: [echo first >> order, echo token is $TOKEN]
  environment:
    TOKEN:
      from_secret: token
- name: left
  depends_on: [first]
  commands: [sleep 0.2, echo left >> order]
- name: right
  depends_on: [first]
  failure: ignore
  commands: [echo right >> order, exit 3]
- name: last
  depends_on: [left, right]
  commands: [cat order]
- name: on-failure
  depends_on: [last]
  when:
    status: [failure]
  commands: [echo never]
`
	task, id := r.take(t, yaml, mockmanager.NewSecret{Name: "token", Data: "s3cr3t-value"})
	rep := r.run(t.Context(), t, id, task)
	require.Equal(t, drone.Status("success"), rep.Stage.Status, "a failure ignored does not fail the stage: %+v", rep.Stage.Steps)
	st := r.deliver(t, id, rep)
	require.Equal(t, drone.Status("success"), st.Stage.Status)
	byName := steps(st)
	require.Equal(t, drone.Status("success"), byName["first"].Step.Status)
	require.Equal(t, drone.Status("failure"), byName["right"].Step.Status)
	require.Equal(t, 3, byName["right"].Step.ExitCode)
	require.True(t, byName["right"].Step.Errignore)
	require.Equal(t, drone.Status("skipped"), byName["on-failure"].Step.Status)
	require.Equal(t, drone.Status("success"), byName["last"].Step.Status)

	first := logText(t, byName["first"])
	require.Contains(t, first, "+ echo first >> order\n")
	require.NotContains(t, first, "s3cr3t-value", "secrets are masked")
	require.Contains(t, first, "token is ***")
	last := logText(t, byName["last"])
	require.Regexp(t, `(?s)\+ cat order\nfirst\n(right\nleft|left\nright)\n`, last, "first ran before both branches, last after them")
}

func TestMalformedYAMLEndsTheStageInError(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	task, id := r.take(t, "kind: pipeline\ntype: exec\nname: default\nsteps: [\n")
	rep := r.run(t.Context(), t, id, task)
	st := r.deliver(t, id, rep)
	require.Equal(t, drone.Status("error"), st.Stage.Status)
	require.Equal(t, 255, st.Stage.ExitCode)
	require.Contains(t, st.Stage.Error, "invalid pipeline YAML")
}

func TestUnknownTypeAndMissingSecretSayWhy(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	task, id := r.take(t, "kind: pipeline\ntype: ssh\nname: default\nsteps:\n- name: a\n  commands: [true]\n")
	st := r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("error"), st.Stage.Status)
	require.Contains(t, st.Stage.Error, `type "ssh" is not supported`)

	task, id = r.take(t, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: a\n  commands: [true]\n  environment:\n    X:\n      from_secret: nope\n")
	st = r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("error"), st.Stage.Status)
	a := steps(st)["a"]
	require.Equal(t, drone.Status("error"), a.Step.Status)
	require.Contains(t, a.Step.Error, "nope")
}

func TestCancelStopsTheRunningStep(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	task, id := r.take(t, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: long\n  commands: [echo $$ > "+pidFile+"; exec sleep 60]\n- name: after\n  commands: [echo never]\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan drone.StageReport, 1)
	go func() { done <- r.run(ctx, t, id, task) }()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	var rep drone.StageReport
	select {
	case rep = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the stage did not end after its cancel")
	}
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 10*time.Second, 10*time.Millisecond,
		"the step's process is gone")
	st := r.deliver(t, id, rep)
	require.Equal(t, drone.Status("killed"), st.Stage.Status)
	byName := steps(st)
	require.Equal(t, drone.Status("killed"), byName["long"].Step.Status)
	require.Equal(t, drone.Status("skipped"), byName["after"].Step.Status)
}

func TestDetachedStepRunsBesideTheOthersAndEndsWithTheStage(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	task, id := r.take(t, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: service\n  detach: true\n  commands: [echo $$ > "+pidFile+"; exec sleep 60]\n- name: client\n  depends_on: [service]\n  commands: [sleep 0.2, cat "+pidFile+"]\n")
	rep := r.run(t.Context(), t, id, task)
	st := r.deliver(t, id, rep)
	require.Equal(t, drone.Status("success"), st.Stage.Status)
	byName := steps(st)
	require.True(t, byName["service"].Step.Detached)
	require.Equal(t, drone.Status("success"), byName["client"].Step.Status)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.Contains(t, logText(t, byName["client"]), strconv.Itoa(pid), "the client ran while the service did")
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 10*time.Second, 10*time.Millisecond,
		"the detached step ends with the stage")
}

func TestHostVolumesNeedATrustedRepository(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	task, id := r.take(t, "kind: pipeline\ntype: docker\nname: default\nvolumes:\n- name: sock\n  host:\n    path: /var/run/docker.sock\nsteps:\n- name: a\n  image: busybox\n  volumes:\n  - name: sock\n    path: /var/run/docker.sock\n  commands: [true]\n")
	st := r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("error"), st.Stage.Status)
	require.Contains(t, st.Stage.Error, `volume "sock" is a host volume, which only a trusted repository may use`)
	require.Equal(t, drone.Status("skipped"), steps(st)["a"].Step.Status)
}
