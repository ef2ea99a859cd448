package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/dockertest"
	"github.com/dlite-dev/dlite/mockmanager"
)

// droneRunnerEnv is the environment of a Drone runner process against the server at url: its
// name, spool and state directory are the caller's, so a restarted runner can be the same one.
func droneRunnerEnv(url, secret, name, spool, typ string, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"DRONE_RPC_HOST=" + strings.TrimPrefix(url, "http://"),
		"DRONE_RPC_SECRET=" + secret,
		"DRONE_RUNNER_NAME=" + name,
		"DRONE_RUNNER_TYPE=" + typ,
		"DRONE_RUNNER_CAPACITY=2",
		"DLITE_NAME=" + name,
		"DLITE_SPOOL_DIR=" + spool,
		"DLITE_POLL_INTERVAL_MILLISECS=50",
		"DLITE_HEARTBEAT_INTERVAL=1s",
		"DLITE_HTTP_ADDR=off",
		"DLITE_LOG_LEVEL=debug",
	}, extra...)
}

// droneBuild queues a build of yaml with one stage of type typ.
func droneBuild(t *testing.T, ds *mockmanager.DroneTestServer, yaml, typ string) int64 {
	t.Helper()
	b, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: yaml, Stages: []mockmanager.NewStage{{Name: "default", Type: typ}},
		Secrets: []mockmanager.NewSecret{{Name: "token", Data: "drone-e2e-secret"}}})
	require.NoError(t, err)
	return b.Build.Id
}

// waitDrone waits for the build to end and returns its only stage.
func waitDrone(t *testing.T, ds *mockmanager.DroneTestServer, id int64) mockmanager.StageState {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	b, err := ds.WaitBuild(ctx, id)
	require.NoError(t, err)
	require.Len(t, b.Stages, 1)
	return b.Stages[0]
}

func droneSteps(st mockmanager.StageState) map[string]mockmanager.StepState {
	out := map[string]mockmanager.StepState{}
	for _, s := range st.Steps {
		out[s.Step.Name] = s
	}
	return out
}

// droneLog is the text of a step's uploaded log.
func droneLog(t *testing.T, s mockmanager.StepState) string {
	t.Helper()
	var lines []droneapi.Line
	require.NoError(t, json.Unmarshal([]byte(s.Log), &lines), "the uploaded log is the lines' JSON")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Out)
	}
	return b.String()
}

const droneExecPipeline = `kind: pipeline
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
  commands: [sleep 0.3, echo left >> order]
- name: right
  depends_on: [first]
  failure: ignore
  commands: [echo right >> order, exit 2]
- name: last
  depends_on: [left, right]
  commands: [cat order]
- name: on-failure
  depends_on: [last]
  when:
    status: [failure]
  commands: [echo never]
`

// An exec pipeline on the real binary: steps in depends_on order with parallel branches, a
// failure ignored, a step skipped by its when, secrets masked in the uploaded logs.
func TestDroneExecPipeline(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-exec", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	st := waitDrone(t, ds, droneBuild(t, ds, droneExecPipeline, "exec"))
	require.Equal(t, droneapi.Status("success"), st.Stage.Status)
	steps := droneSteps(st)
	require.Equal(t, droneapi.Status("failure"), steps["right"].Step.Status)
	require.Equal(t, 2, steps["right"].Step.ExitCode)
	require.Equal(t, droneapi.Status("skipped"), steps["on-failure"].Step.Status)
	require.Regexp(t, `(?s)\+ cat order\nfirst\n(right\nleft|left\nright)\n`, droneLog(t, steps["last"]))
	first := droneLog(t, steps["first"])
	require.Contains(t, first, "token is ***")
	require.NotContains(t, first, "drone-e2e-secret")
}

// A docker pipeline on the real binary: steps in containers sharing the workspace, where Drone
// puts it (/drone/src, the steps' working directory), and a temp volume.
func TestDroneDockerPipeline(t *testing.T) {
	t.Parallel()
	img := dockertest.Image(t)
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-docker", t.TempDir(), "docker", "DLITE_DOCKER=on"))
	yaml := fmt.Sprintf(`kind: pipeline
type: docker
name: default
clone:
  disable: true
volumes:
- name: cache
  temp: {}
steps:
- name: write
  image: %[1]s
  pull: never
  volumes:
  - name: cache
    path: /cache
  commands: [echo from a container > shared.txt, mkdir made-dir, echo cached > /cache/c]
- name: look
  image: %[1]s
  pull: never
  commands:
  - pwd
  - ls
  - echo "workspace=$DRONE_WORKSPACE base=$DRONE_WORKSPACE_BASE path=$DRONE_WORKSPACE_PATH"
  - ls /drone/src/shared.txt
- name: read
  image: %[1]s
  pull: never
  volumes:
  - name: cache
    path: /cache
  commands: [cat shared.txt /cache/c, exit 4]
  failure: ignore
`, img)
	st := waitDrone(t, ds, droneBuild(t, ds, yaml, "docker"))
	require.Equal(t, droneapi.Status("success"), st.Stage.Status, st.Stage.Error)
	steps := droneSteps(st)
	require.Equal(t, droneapi.Status("success"), steps["write"].Step.Status)
	require.Equal(t, droneapi.Status("success"), steps["look"].Step.Status, droneLog(t, steps["look"]))
	look := droneLog(t, steps["look"])
	require.Contains(t, look, "+ pwd\n/drone/src\n", "the steps run in the workspace, at /drone/src")
	require.Regexp(t, `\+ ls\n(\S+\n)*made-dir\n(\S+\n)*shared.txt\n`, look, "a later step sees what an earlier one wrote")
	require.Contains(t, look, "workspace=/drone/src base=/drone path=src\n")
	require.Equal(t, droneapi.Status("failure"), steps["read"].Step.Status)
	require.Equal(t, 4, steps["read"].Step.ExitCode)
	require.Contains(t, droneLog(t, steps["read"]), "from a container\ncached\n")
}

// DRONE_RUNNER_MAX_PROCS bounds the steps of a stage that run at once: two branches that would
// overlap (each holds a lock directory for a while, and fails if the other holds it) run one
// after the other.
func TestDroneMaxProcs(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-max-procs", t.TempDir(), "exec", "DLITE_DOCKER=off",
		"DRONE_RUNNER_MAX_PROCS=1"))
	const branch = "mkdir ../lock, sleep 1, rmdir ../lock"
	yaml := "kind: pipeline\ntype: exec\nname: default\nclone:\n  disable: true\nsteps:\n" +
		"- name: left\n  commands: [" + branch + "]\n" +
		"- name: right\n  commands: [" + branch + "]\n" +
		"- name: after\n  depends_on: [left, right]\n  commands: [true]\n"
	st := waitDrone(t, ds, droneBuild(t, ds, yaml, "exec"))
	steps := droneSteps(st)
	require.Equal(t, droneapi.Status("success"), st.Stage.Status, "left: %s\nright: %s", droneLog(t, steps["left"]), droneLog(t, steps["right"]))
	left, right := steps["left"].Step, steps["right"].Step
	require.True(t, left.Stopped <= right.Started || right.Stopped <= left.Started,
		"one branch starts after the other stopped: left %d-%d, right %d-%d", left.Started, left.Stopped, right.Started, right.Stopped)
}

// A cancel on the server while a step runs: the watch hears it, the step's process is gone
// within seconds, and the stage ends killed (its final update landing after the server's own).
func TestDroneCancelMidStep(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-cancel", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	pidFile := filepath.Join(t.TempDir(), "pid")
	id := droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: long\n  commands: [echo $$ > "+pidFile+"; exec sleep 300]\n", "exec")
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, waitFor, 20*time.Millisecond, "the step runs")
	// Watches end every PollTimeout with nothing; the cancel comes after several of them.
	time.Sleep(3 * time.Second)
	_, err := ds.CancelBuild(id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 20*time.Second, 20*time.Millisecond,
		"the step's process is gone")
	require.Eventually(t, func() bool {
		b, err := ds.Build(id)
		return err == nil && b.Stages[0].Stage.Machine == "drone-cancel" && b.Stages[0].Stage.ExitCode == 137
	}, waitFor, 20*time.Millisecond, "the runner's final update lands: exit 137 is the runner's, 130 the server's")
	b, err := ds.Build(id)
	require.NoError(t, err)
	require.Equal(t, droneapi.Status("killed"), b.Stages[0].Stage.Status)
}

// A runner killed with SIGKILL while its stage's final updates cannot be delivered, then started
// again on the same spool, delivers them.
func TestDroneUpdatesSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	var blocked atomic.Bool
	blocked.Store(true)
	var refused atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if blocked.Load() && strings.HasSuffix(r.URL.Path, "/logs/upload") {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ds.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	spool := t.TempDir()
	env := droneRunnerEnv(proxy.URL, ds.Secret(), "drone-restart", spool, "exec", "DLITE_DOCKER=off")
	p := startProc(t, env)
	id := droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: hello\n  commands: [echo hello]\n", "exec")
	require.Eventually(t, func() bool { return refused.Load() > 0 }, waitFor, 20*time.Millisecond, "the final upload is tried")
	b, err := ds.Build(id)
	require.NoError(t, err)
	require.Equal(t, droneapi.Status("running"), b.Stages[0].Stage.Status, "nothing final landed yet")
	p.kill(t)

	blocked.Store(false)
	startProc(t, env)
	st := waitDrone(t, ds, id)
	require.Equal(t, droneapi.Status("success"), st.Stage.Status)
	hello := droneSteps(st)["hello"]
	require.Equal(t, droneapi.Status("success"), hello.Step.Status)
	require.Contains(t, droneLog(t, hello), "hello\n")
}

// Two runners take stages from the same server: each stage runs once.
func TestDroneTwoRunnersRaceForStages(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	ran := filepath.Join(t.TempDir(), "ran")
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-race-a", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-race-b", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	var ids []int64
	for range 8 {
		ids = append(ids, droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: once\n  commands: [echo $DRONE_BUILD_NUMBER >> "+ran+"]\n", "exec"))
	}
	machines := map[string]int{}
	for _, id := range ids {
		st := waitDrone(t, ds, id)
		require.Equal(t, droneapi.Status("success"), st.Stage.Status)
		machines[st.Stage.Machine]++
	}
	data, err := os.ReadFile(ran)
	require.NoError(t, err)
	lines := strings.Fields(string(data))
	slices.Sort(lines)
	require.Equal(t, []string{"1", "2", "3", "4", "5", "6", "7", "8"}, lines, "each stage ran once")
	t.Logf("stages per runner: %v", machines)
}

// A runner with the wrong secret says so and retries slowly, never in a tight loop.
func TestDroneWrongSecret(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	p := startProc(t, droneRunnerEnv(ds.URL, "not-the-secret", "drone-wrong", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "registration refused") }, waitFor, 20*time.Millisecond,
		"a clear error")
	require.Contains(t, p.out.String(), "level=ERROR")
	require.Contains(t, p.out.String(), "refused the RPC secret (401)")
	time.Sleep(5 * time.Second)
	var refused int64
	for _, rc := range ds.Requests() {
		if rc.Status == http.StatusUnauthorized {
			refused += rc.Count
		}
	}
	require.Positive(t, refused)
	require.LessOrEqual(t, refused, int64(3), "a refused secret is retried slowly: %v", ds.Requests())
	require.True(t, p.running(), "the runner keeps running, for an operator to fix the secret")
}

// A stage whose YAML does not parse ends in error, and the runner goes on with the next one.
func TestDroneMalformedYAML(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	p := startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-yaml", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	bad := waitDrone(t, ds, droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nsteps: [\n", "exec"))
	require.Equal(t, droneapi.Status("error"), bad.Stage.Status)
	require.Contains(t, bad.Stage.Error, "invalid pipeline YAML")
	good := waitDrone(t, ds, droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: ok\n  commands: [true]\n", "exec"))
	require.Equal(t, droneapi.Status("success"), good.Stage.Status)
	require.True(t, p.running())
}

// A cancel while a container step runs: the container is gone within seconds, and the stage ends
// killed.
func TestDroneCancelDockerStep(t *testing.T) {
	t.Parallel()
	img := dockertest.Image(t)
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-docker-cancel", t.TempDir(), "docker", "DLITE_DOCKER=on"))
	// A stage no runner takes first: the stage under test is then numbered 2, and its engine
	// stage id differs from the other Docker test's, whose leftovers are looked up by it too.
	_, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: "kind: pipeline\nname: default\n",
		Stages: []mockmanager.NewStage{{Name: "default", Type: "nobody-takes-it"}}})
	require.NoError(t, err)
	id := droneBuild(t, ds, fmt.Sprintf("kind: pipeline\ntype: docker\nname: default\nclone: {disable: true}\nsteps:\n- name: long\n  image: %s\n  pull: never\n  commands: [echo started, sleep 300]\n", img), "docker")
	b, err := ds.Build(id)
	require.NoError(t, err)
	stageID := fmt.Sprintf("drone-%d", b.Stages[0].Stage.Id)
	require.Equal(t, "drone-2", stageID)
	require.Eventually(t, func() bool {
		b, err := ds.Build(id)
		if err != nil || len(b.Stages[0].Steps) != 1 {
			return false
		}
		for _, l := range b.Stages[0].Steps[0].Lines {
			if l.Out == "started\n" {
				return true
			}
		}
		return false
	}, waitFor, 50*time.Millisecond, "the step's container runs, its first line sent in a batch")
	require.Contains(t, strings.Join(dockertest.Leftovers(t, stageID), " "), "container ")
	_, err = ds.CancelBuild(id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(dockertest.Leftovers(t, stageID)) == 0 }, 30*time.Second, 100*time.Millisecond,
		"the container is gone")
	require.Eventually(t, func() bool {
		b, err := ds.Build(id)
		return err == nil && b.Stages[0].Stage.ExitCode == 137
	}, waitFor, 20*time.Millisecond, "the runner's final update lands")
	b, err = ds.Build(id)
	require.NoError(t, err)
	require.Equal(t, droneapi.Status("killed"), b.Stages[0].Stage.Status)
	require.Equal(t, droneapi.Status("killed"), b.Stages[0].Steps[0].Step.Status)
}
