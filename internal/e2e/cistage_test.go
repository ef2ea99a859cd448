package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/dockertest"
	"github.com/dlite-dev/dlite/mockmanager"
)

// ciStage drives one CI stage of a runner process through the mock manager, one task at a time
// as the manager sends them.
type ciStage struct {
	t     *testing.T
	mm    *mockmanager.TestServer
	id    string
	state string
}

// newCIStage names the stage after the test and a random suffix: what a failed run leaves in
// the daemon never meets a later run.
func newCIStage(t *testing.T, mm *mockmanager.TestServer, state string) *ciStage {
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return &ciStage{t: t, mm: mm, id: "stage-" + t.Name() + "-" + hex.EncodeToString(suffix), state: state}
}

// run enqueues a task with data and waits for its answer.
func (s *ciStage) run(typ string, data any, timeout int64) (mockmanager.RecordedResponse, map[string]any) {
	s.t.Helper()
	r := answered(s.t, s.mm, enqueue(s.t, s.mm, task(typ, data, timeout, false))).Responses[0]
	return r, dataObject(s.t, r)
}

// logConfig is the stage's log_config for the mock log service.
func (s *ciStage) logConfig(indirect bool) map[string]any {
	return map[string]any{"url": s.mm.LogServiceURL(), "account_id": s.mm.AccountID(), "token": s.mm.LogToken(), "indirect_upload": indirect}
}

// log returns the permanent log a step uploaded, as text.
func (s *ciStage) log(key string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), waitFor)
	defer cancel()
	blob, err := s.mm.WaitBlob(ctx, "", key)
	require.NoError(s.t, err)
	return mockmanager.LogText(blob.Lines)
}

// gone checks that cleanup left nothing: no container, network or volume labelled with the stage,
// and no stage directory in the state directory.
func (s *ciStage) gone() {
	s.t.Helper()
	require.Empty(s.t, dockertest.Leftovers(s.t, s.id), "no Docker object of the stage is left")
	entries, err := os.ReadDir(filepath.Join(s.state, "stages"))
	if !os.IsNotExist(err) {
		require.NoError(s.t, err)
		require.Empty(s.t, entries, "no stage directory is left")
	}
}

// vmStep is a DLITE_CI_VM_EXECUTE_TASK's data.
func (s *ciStage) vmStep(step map[string]any) map[string]any {
	if step["log_key"] == nil {
		step["log_key"] = s.id + "/" + step["id"].(string)
	}
	return map[string]any{"execute_step_request": map[string]any{"stage_runtime_id": s.id, "pool_id": "local",
		"start_step_request": step}}
}

func script(cmd string) map[string]any {
	return map[string]any{"entrypoint": []string{"sh", "-c"}, "commands": []string{cmd}}
}

const ciSecret = "s3cr3t-build-token"

// A whole VM-family stage on the real binary: a service, host and container steps sharing the
// workspace, output variables, a failing step, a timeout and an abort, each answered in the
// VMTaskExecutionResponse form; the logs read back from the log service are masked; cleanup
// leaves no container, network, volume or directory behind.
func TestCIStageOfTheVMFamily(t *testing.T) {
	t.Parallel()
	img := dockertest.Image(t)
	mm := newMock(t, mockmanager.Options{})
	state := t.TempDir()
	p := startProc(t, ciRunnerEnv(mm, "ci-vm-runner", t.TempDir(), state))
	s := newCIStage(t, mm, state)

	r, body := s.run("DLITE_CI_VM_INITIALIZE_TASK", map[string]any{
		"setup_vm_request": map[string]any{"id": s.id, "pool_id": "local", "log_key": s.id + "/setup",
			"setup_request": map[string]any{
				"envs":       map[string]string{"CI": "true"},
				"network":    map[string]any{"id": "net-" + s.id},
				"volumes":    []any{map[string]any{"temp": map[string]any{"id": "cache-" + s.id, "name": "cache"}}},
				"secrets":    []string{ciSecret},
				"log_config": s.logConfig(false),
				"ti_config":  map[string]any{"url": "http://ti.invalid", "repo": "r"},
			}},
		"services": []any{map[string]any{"start_step_request": map[string]any{"id": "svc", "name": "service", "image": img, "pull": "Never",
			"detach": true, "run": script("sleep 300")}}},
	}, 120)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, "SUCCESS", body["command_execution_status"])
	require.NotEmpty(t, body["ip_address"])
	registered := delegates(t, mm, 1)[0].DelegateId
	require.Equal(t, registered, body["delegate_meta_info"].(map[string]any)["id"], "setup pins the stage to this runner")
	require.Equal(t, "RUNNING", body["service_statuses"].([]any)[0].(map[string]any)["status"])

	r, body = s.run("DLITE_CI_VM_EXECUTE_TASK", s.vmStep(map[string]any{"id": "build", "name": "Build",
		"run":         script(`echo "building with $TOKEN"; mkdir -p out; echo artefact > out/a.txt; VERSION=1.2.3`),
		"environment": map[string]string{"TOKEN": ciSecret}, "output_vars": []string{"VERSION"}}), 60)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, map[string]any{"VERSION": "1.2.3"}, body["output_vars"])

	r, body = s.run("DLITE_CI_VM_EXECUTE_TASK", s.vmStep(map[string]any{"id": "test", "name": "Test", "image": img, "pull": "Never",
		"run":     script(`cat out/a.txt; echo cached > /cache/c; RESULT=passed`),
		"volumes": []any{map[string]any{"name": "cache", "path": "/cache"}, map[string]any{"name": "harness", "path": "/harness"}},
		"outputs": []any{map[string]any{"key": "result", "value": "RESULT", "type": "STRING"}}}), 60)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, []any{map[string]any{"key": "result", "value": "passed", "type": "STRING"}}, body["outputs"])

	r, body = s.run("DLITE_CI_VM_EXECUTE_TASK", s.vmStep(map[string]any{"id": "fail", "run": script("exit 2")}), 60)
	require.Equal(t, "FAILED", r.Code)
	require.Equal(t, "FAILURE", body["command_execution_status"])
	require.Equal(t, "exit status 2", body["error_message"], "the exit status, exactly as the manager expects it")

	r, body = s.run("DLITE_CI_VM_EXECUTE_TASK", s.vmStep(map[string]any{"id": "slow", "run": script("sleep 30"), "timeout": 1}), 60)
	require.Equal(t, "FAILED", r.Code)
	require.Equal(t, "FAILURE", body["command_execution_status"])
	require.Contains(t, body["error_message"], "timed out")

	abortID := enqueue(t, mm, task("DLITE_CI_VM_EXECUTE_TASK", s.vmStep(map[string]any{"id": "hang", "image": img, "pull": "Never",
		"run": script("echo started; sleep 300")}), 600, false))
	acquired(t, mm, abortID)
	require.Eventually(t, func() bool {
		lines, err := mm.StreamLines("", s.id+"/hang")
		return err == nil && strings.Contains(mockmanager.LogText(lines), "started")
	}, waitFor, 20*time.Millisecond, "the step runs")
	_, err := mm.Abort(abortID)
	require.NoError(t, err)
	aborted := answered(t, mm, abortID).Responses[0]
	require.Equal(t, "FAILED", aborted.Code)

	build := s.log(s.id + "/build")
	require.Contains(t, build, "building with **************")
	require.NotContains(t, build, ciSecret, "the secret never reaches the log service")
	require.Contains(t, s.log(s.id+"/test"), "artefact", "the container step saw the host step's workspace")

	r, body = s.run("DLITE_CI_VM_CLEANUP_TASK", map[string]any{"pool_id": "local", "stage_runtime_id": s.id, "log_key": s.id}, 300)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, "SUCCESS", body["command_execution_status"])
	s.gone()
	require.True(t, p.running())
}

// A CI_DOCKER_* stage in the bean's camelCase spelling survives its runner being killed with
// SIGKILL between two steps: the runner restarted on the same state directory registers under the
// same delegate id, so the manager's pinning still hands it the stage's next step and its
// cleanup, and it runs them on the stage the first process set up.
func TestCIStageSurvivesSIGKILLBetweenSteps(t *testing.T) {
	t.Parallel()
	img := dockertest.Image(t)
	mm := newMock(t, mockmanager.Options{})
	state, spool := t.TempDir(), t.TempDir()
	env := ciRunnerEnv(mm, "ci-docker-runner", spool, state)
	first := startProc(t, env)
	s := newCIStage(t, mm, state)

	r, body := s.run("CI_DOCKER_INITIALIZE_TASK", map[string]any{"id": s.id, "poolID": "local", "logKey": s.id + "/setup",
		"config": map[string]any{
			"envs":      map[string]string{"GREETING": "hello"},
			"network":   map[string]any{"id": "net-" + s.id},
			"secrets":   []string{ciSecret},
			"logConfig": map[string]any{"url": mm.LogServiceURL(), "accountID": mm.AccountID(), "token": mm.LogToken(), "indirectUpload": true},
		}}, 120)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, "SUCCESS", body["commandExecutionStatus"])
	pinned := body["delegateMetaInfo"].(map[string]any)["id"]
	require.NotEmpty(t, pinned)

	step := func(id string, extra map[string]any) map[string]any {
		req := map[string]any{"id": id, "log_key": s.id + "/" + id}
		for k, v := range extra {
			req[k] = v
		}
		return map[string]any{"stageRuntimeID": s.id, "correlationID": "c", "startStepRequest": req}
	}
	r, body = s.run("CI_DOCKER_EXECUTE_TASK", step("one", map[string]any{"image": img, "pull": "Never",
		"run": script(`echo "$GREETING from step one" > /harness/one.txt; echo wrote one.txt`)}), 60)
	require.Equal(t, "OK", r.Code, "%v", body)

	first.kill(t)
	second := startProc(t, env)

	r, body = s.run("CI_DOCKER_EXECUTE_TASK", step("two", map[string]any{"run": script(`cat one.txt; LINE=$(cat one.txt)`),
		"output_vars": []string{"LINE"}}), 60)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, map[string]any{"LINE": "hello from step one"}, body["outputVars"])
	require.Len(t, mm.Delegates(), 1, "the restarted runner is the same delegate")
	require.Equal(t, pinned, mm.Delegates()[0].DelegateId)
	st, err := mm.Stage(s.id)
	require.NoError(t, err)
	require.Equal(t, pinned, *st.PinnedTo)

	r, body = s.run("CI_DOCKER_CLEANUP_TASK", map[string]any{"correlationID": "c", "id": s.id}, 300)
	require.Equal(t, "OK", r.Code, "%v", body)
	require.Equal(t, "SUCCESS", body["commandExecutionStatus"])
	require.Equal(t, pinned, body["delegateMetaInfo"].(map[string]any)["id"])
	s.gone()
	require.True(t, second.running())
}

// Data the runner cannot run is answered FAILURE in its family's form, saying what is wrong, and
// the runner goes on running tasks.
func TestCIBadInputIsAFailureAndTheRunnerKeepsRunning(t *testing.T) {
	t.Parallel()
	dockertest.Image(t)
	mm := newMock(t, mockmanager.Options{})
	state := t.TempDir()
	p := startProc(t, ciRunnerEnv(mm, "ci-bad-input-runner", t.TempDir(), state))
	s := newCIStage(t, mm, state)
	r, body := s.run("CI_DOCKER_INITIALIZE_TASK", map[string]any{"id": s.id}, 120)
	require.Equal(t, "OK", r.Code, "%v", body)

	cases := []struct {
		name, typ string
		data      any
		want      string
	}{
		{"a setup without a stage id", "DLITE_CI_VM_INITIALIZE_TASK", map[string]any{"setup_vm_request": map[string]any{"pool_id": "p"}}, `property "id" is missing`},
		{"a step of an unknown stage", "DLITE_CI_VM_EXECUTE_TASK", map[string]any{"execute_step_request": map[string]any{
			"stage_runtime_id": "no-such-stage", "start_step_request": map[string]any{"id": "s", "run": script("true")}}}, "stage not found"},
		{"a malformed step", "CI_DOCKER_EXECUTE_TASK", map[string]any{"stage_runtime_id": s.id,
			"start_step_request": map[string]any{"id": "s", "run": map[string]any{"commands": "echo"}}}, "/start_step_request/run/commands: value must be an array"},
		{"an image that does not exist", "CI_DOCKER_EXECUTE_TASK", map[string]any{"stage_runtime_id": s.id,
			"start_step_request": map[string]any{"id": "img", "image": "dlite-test/no-such-image:1", "pull": "Never", "run": script("true")}}, "no-such-image"},
		{"a test-intelligence step", "CI_DOCKER_EXECUTE_TASK", map[string]any{"stage_runtime_id": s.id,
			"start_step_request": map[string]any{"id": "ti", "kind": "RunTest"}}, "step kind RunTest is not supported by this runner"},
	}
	for _, c := range cases {
		r, body := s.run(c.typ, c.data, 60)
		require.Equal(t, "FAILED", r.Code, c.name)
		status, msg := body["command_execution_status"], body["error_message"]
		if strings.HasPrefix(c.typ, "CI_DOCKER") {
			status, msg = body["commandExecutionStatus"], body["errorMessage"]
		}
		require.Equal(t, "FAILURE", status, c.name)
		require.Contains(t, msg, c.want, c.name)
		require.True(t, p.running(), "the runner still runs after %s", c.name)
	}

	r, _ = s.run("SLEEP_TASK", map[string]any{"milliseconds": 1}, 60)
	require.Equal(t, "OK", r.Code, "and still takes work")
	r, body = s.run("CI_DOCKER_CLEANUP_TASK", map[string]any{"correlation_id": "c", "id": s.id}, 300)
	require.Equal(t, "OK", r.Code, "%v", body)
	s.gone()
}
