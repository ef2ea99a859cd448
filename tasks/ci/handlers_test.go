package ci_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/dispatch"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/syncbuf"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/ci"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeEngine records what the handlers ask of the engine and answers from its fields.
type fakeEngine struct {
	mu       sync.Mutex
	stages   map[string]engine.StageSpec
	steps    []engine.StepSpec
	cleaned  []string
	results  map[string]engine.StepResult
	setupErr error
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{stages: map[string]engine.StageSpec{}, results: map[string]engine.StepResult{}}
}

func (f *fakeEngine) Setup(_ context.Context, spec engine.StageSpec) (*engine.Stage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setupErr != nil {
		return nil, f.setupErr
	}
	f.stages[spec.ID] = spec
	st := &engine.Stage{Spec: spec, State: engine.StageReady}
	for _, s := range spec.Services {
		st.Services = append(st.Services, engine.ServiceStatus{ID: s.ID, Name: s.Name, Image: s.Image, LogKey: s.LogKey, Running: s.Image != "missing"})
	}
	return st, nil
}

func (f *fakeEngine) Execute(_ context.Context, stageID string, step engine.StepSpec) (engine.StepResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.stages[stageID]; !ok {
		return engine.StepResult{}, fmt.Errorf("execute step %s: stage %s: %w", step.ID, stageID, engine.ErrStageNotFound)
	}
	f.steps = append(f.steps, step)
	if r, ok := f.results[step.ID]; ok {
		return r, nil
	}
	return engine.StepResult{Status: engine.StepSuccess}, nil
}

func (f *fakeEngine) Cleanup(_ context.Context, stageID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stages, stageID)
	f.cleaned = append(f.cleaned, stageID)
	return nil
}

// runner runs CI tasks through the runtime's dispatcher, the way a runner does.
type runner struct {
	t      *testing.T
	logs   *syncbuf.Buffer
	eng    *fakeEngine
	d      *dispatch.Dispatcher
	schema map[string]*openapi3.Schema
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	eng := newFakeEngine()
	h, err := ci.New(ci.Options{Engine: eng, HostName: "build-host", IPAddress: "10.0.0.7"})
	require.NoError(t, err)
	d, err := dispatch.New(dispatch.Options{Servers: []dispatch.TaskServer{{
		Spec: citasks.GetSpec, Register: func(e *echo.Echo) { h.Register(e) }}}})
	require.NoError(t, err)
	spec, err := citasks.GetSpec()
	require.NoError(t, err)
	sch := map[string]*openapi3.Schema{}
	for name, ref := range spec.Components.Schemas {
		sch[name] = ref.Value
	}
	return &runner{t: t, eng: eng, d: d, schema: sch, logs: &syncbuf.Buffer{}}
}

// run dispatches a task and returns its outcome and its data decoded, after checking the data
// against the family's answer schema.
func (r *runner) run(typ, data string) (dispatch.Outcome, map[string]any) {
	r.t.Helper()
	task := &manager.Task{
		Envelope: tasks.Envelope{ID: "task-1", Type: typ, Delegate: tasks.Delegate{ID: "dlg-42"}},
		Data:     json.RawMessage(data),
	}
	o := r.d.Dispatch(context.Background(), task, slog.New(slog.NewTextHandler(r.logs, nil)))
	<-o.Settled
	require.NotNil(r.t, o.Data, "every CI answer carries its body, failures included: %v", o.Err)
	var body map[string]any
	require.NoError(r.t, json.Unmarshal(o.Data, &body))
	answer := "VMTaskExecutionResponse"
	if typ[:3] == "CI_" {
		answer = "DockerTaskExecutionResponse"
	}
	require.NoError(r.t, r.schema[answer].VisitJSON(body), "the answer matches %s", answer)
	return o, body
}

const vmSetup = `{
  "setup_vm_request": {
    "id": "stage-1", "pool_id": "local", "log_key": "setup-log",
    "context": {"account_id": "acc", "run_sequence": 3},
    "unknown_key_the_manager_added": {"x": 1},
    "setup_request": {
      "envs": {"CI": "true"},
      "network": {"id": "net-stage-1"},
      "volumes": [{"temp": {"id": "vol-1", "name": "cache"}}, {"host": {"id": "ws", "name": "harness", "path": "/tmp/harness", "create": true, "remove": true}}],
      "secrets": ["s3cret"],
      "log_config": {"url": "http://logs", "account_id": "acc", "token": "tok", "indirect_upload": true},
      "ti_config": {"url": "http://ti", "repo": "r"},
      "files": [{"path": "/tmp/f", "mode": 420, "data": "x"}]
    }
  },
  "services": [{"start_step_request": {"id": "db", "name": "postgres", "image": "postgres", "detach": true}}]
}`

func TestVMStage(t *testing.T) {
	t.Parallel()
	r := newRunner(t)

	o, body := r.run("DLITE_CI_VM_INITIALIZE_TASK", vmSetup)
	require.Equal(t, manager.CodeOK, o.Code)
	require.Equal(t, "SUCCESS", body["command_execution_status"])
	require.Equal(t, "10.0.0.7", body["ip_address"])
	require.Equal(t, map[string]any{"id": "dlg-42", "host_name": "build-host"}, body["delegate_meta_info"])
	require.Len(t, body["service_statuses"], 1)

	spec := r.eng.stages["stage-1"]
	require.Equal(t, "setup-log", spec.LogKey)
	require.Equal(t, "net-stage-1", spec.Network.ID)
	require.Equal(t, map[string]string{"CI": "true"}, spec.Env)
	require.Equal(t, []string{"s3cret"}, spec.Secrets)
	require.Equal(t, "harness", spec.Logs.Kind)
	require.JSONEq(t, `{"url": "http://logs", "account_id": "acc", "token": "tok", "indirect_upload": true}`, string(spec.Logs.Settings))
	require.JSONEq(t, `{"url": "http://ti", "repo": "r"}`, string(spec.Data["ti_config"]))
	require.Equal(t, []engine.Volume{{Name: "cache", ID: "vol-1", Temp: &engine.TempVolume{}}}, spec.Volumes,
		"the harness volume is the stage's workspace, which the engine makes")
	require.Equal(t, []engine.File{{Path: "/tmp/f", Mode: 0o644, Data: "x"}}, spec.Files)
	require.Len(t, spec.Services, 1)
	require.True(t, spec.Services[0].Detach)

	r.eng.results["fail"] = engine.StepResult{Status: engine.StepFailure, ExitCode: 2, Error: "exit status 2",
		OutputVars: map[string]string{"A": "1"}}
	r.eng.results["out"] = engine.StepResult{Status: engine.StepSuccess, OutputVars: map[string]string{"GREETING": "hi"},
		Outputs: []engine.Output{{Key: "TOKEN", Value: "v", Type: engine.OutputSecret}}, Artifact: []byte("art")}

	o, body = r.run("DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "stage-1", "start_step_request": {
		"id": "out", "name": "Out", "log_key": "k1", "image": "alpine", "pull": "IfNotPresent",
		"auth": {"address": "reg", "username": "u", "password": "p"},
		"run": {"entrypoint": ["sh", "-c"], "commands": ["echo hi"]},
		"environment": {"E": "1"}, "secrets": ["p"], "working_dir": "/w", "volumes": [{"name": "cache", "path": "/c"}, {"name": "harness", "path": "/harness"}],
		"output_vars": ["GREETING"], "outputs": [{"key": "TOKEN", "value": "TOK", "type": "SECRET"}], "timeout": 30,
		"privileged": true, "user": "1000", "port_bindings": {"8080": "80"}, "network_aliases": ["out"]}}}`)
	require.Equal(t, manager.CodeOK, o.Code)
	require.Equal(t, "SUCCESS", body["command_execution_status"])
	require.Equal(t, map[string]any{"GREETING": "hi"}, body["output_vars"])
	require.Equal(t, []any{map[string]any{"key": "TOKEN", "value": "v", "type": "SECRET"}}, body["outputs"])
	require.Equal(t, "YXJ0", body["artifact"])
	step := r.eng.steps[0]
	require.Equal(t, engine.PullIfNotPresent, step.Pull)
	require.Equal(t, &engine.RegistryAuth{Address: "reg", Username: "u", Password: "p"}, step.Auth)
	require.Equal(t, []string{"sh", "-c"}, step.Entrypoint)
	require.Equal(t, []string{"echo hi"}, step.Commands)
	require.Equal(t, "30s", step.Timeout.String())
	require.Equal(t, []engine.OutputSpec{{Key: "TOKEN", Value: "TOK", Type: engine.OutputSecret}}, step.Outputs)
	require.Equal(t, []engine.VolumeMount{{Name: "cache", Path: "/c"}}, step.Volumes)
	require.Equal(t, map[string]string{"8080": "80"}, step.PortBindings)
	require.True(t, step.Privileged)

	o, body = r.run("DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "stage-1", "start_step_request": {"id": "fail", "run": {"commands": ["exit 2"]}}}}`)
	require.Equal(t, manager.CodeFailed, o.Code)
	require.ErrorContains(t, o.Err, "exit status 2")
	require.Equal(t, "FAILURE", body["command_execution_status"])
	require.Equal(t, "exit status 2", body["error_message"], "the exit status goes to the manager exactly as the engine says it")
	require.Equal(t, map[string]any{"A": "1"}, body["output_vars"], "a failed step's outputs are still answered")

	o, body = r.run("DLITE_CI_VM_CLEANUP_TASK", `{"pool_id": "local", "stage_runtime_id": "stage-1", "log_key": "k"}`)
	require.Equal(t, manager.CodeOK, o.Code)
	require.Equal(t, "SUCCESS", body["command_execution_status"])
	require.Equal(t, map[string]any{"id": "dlg-42", "host_name": "build-host"}, body["delegate_meta_info"])
	require.Equal(t, []string{"stage-1"}, r.eng.cleaned)
}

func TestDockerSpellings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup string
		want  engine.StageSpec
	}{
		{"snake_case like the VM sibling", `{"id": "st", "pool_id": "p", "log_key": "lk", "setup_request": {
			"envs": {"A": "1"}, "network": {"id": "n"}, "secrets": ["x"],
			"volumes": [{"host": {"name": "data", "path": "/h", "create": true}}],
			"log_config": {"url": "http://l", "account_id": "a", "token": "t", "indirect_upload": false}}}`,
			engine.StageSpec{ID: "st", LogKey: "lk", Network: engine.Network{ID: "n"}, Env: map[string]string{"A": "1"}, Secrets: []string{"x"},
				Volumes: []engine.Volume{{Name: "data", Host: &engine.HostVolume{Path: "/h", Create: true}}},
				Logs:    logsOf(`{"url": "http://l", "account_id": "a", "token": "t", "indirect_upload": false}`)}},
		{"camelCase like the bean", `{"id": "st", "poolID": "p", "logKey": "lk", "config": {
			"envs": {"A": "1"}, "network": {"id": "n"}, "secrets": ["x"], "tiConfig": {"repo": "r"},
			"volumes": [{"hostVolume": {"id": "v", "name": "data", "path": "/h"}}],
			"logConfig": {"url": "http://l", "accountID": "a", "token": "t", "indirectUpload": true}}}`,
			engine.StageSpec{ID: "st", LogKey: "lk", Network: engine.Network{ID: "n"}, Env: map[string]string{"A": "1"}, Secrets: []string{"x"},
				Volumes: []engine.Volume{{Name: "data", ID: "v", Host: &engine.HostVolume{Path: "/h"}}},
				Logs:    logsOf(`{"url": "http://l", "account_id": "a", "token": "t", "indirect_upload": true}`),
				Data:    map[string]json.RawMessage{"ti_config": json.RawMessage(`{"repo": "r"}`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t)
			o, body := r.run("CI_DOCKER_INITIALIZE_TASK", tt.setup)
			require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
			require.Equal(t, "SUCCESS", body["commandExecutionStatus"])
			require.Equal(t, "10.0.0.7", body["ipAddress"])
			require.Equal(t, map[string]any{"id": "dlg-42", "hostName": "build-host"}, body["delegateMetaInfo"])
			got := r.eng.stages["st"]
			require.JSONEq(t, string(tt.want.Logs.Settings), string(got.Logs.Settings))
			require.Equal(t, len(tt.want.Data), len(got.Data))
			for k, v := range tt.want.Data {
				require.JSONEq(t, string(v), string(got.Data[k]))
			}
			tt.want.Logs.Settings, got.Logs.Settings, tt.want.Data, got.Data = nil, nil, nil, nil
			require.Equal(t, tt.want, got)
		})
	}
}

func logsOf(settings string) logstream.Config {
	return logstream.Config{Kind: "harness", Settings: json.RawMessage(settings)}
}

func TestDockerExecuteAndCleanupSpellings(t *testing.T) {
	t.Parallel()
	step := `{"id": "s1", "run": {"entrypoint": ["sh", "-c"], "commands": ["true"]}}`
	tests := []struct{ name, typ, data string }{
		{"docker runner /step body", "CI_DOCKER_EXECUTE_TASK", `{"stage_runtime_id": "st", "ip_address": "127.0.0.1", "correlation_id": "c", "start_step_request": ` + step + `}`},
		{"camelCase outer keys", "CI_DOCKER_EXECUTE_TASK", `{"stageRuntimeID": "st", "correlationID": "c", "startStepRequest": ` + step + `}`},
		{"VM form", "CI_DOCKER_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "st", "start_step_request": ` + step + `}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t)
			o, _ := r.run("CI_DOCKER_INITIALIZE_TASK", `{"id": "st"}`)
			require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
			o, body := r.run(tt.typ, tt.data)
			require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
			require.Equal(t, "SUCCESS", body["commandExecutionStatus"])
			require.Equal(t, "s1", r.eng.steps[0].ID)
		})
	}
	for _, data := range []string{`{"correlation_id": "c", "id": "st"}`, `{"correlationID": "c", "id": "st"}`} {
		r := newRunner(t)
		o, body := r.run("CI_DOCKER_CLEANUP_TASK", data)
		require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
		require.Equal(t, "SUCCESS", body["commandExecutionStatus"])
		require.Equal(t, map[string]any{"id": "dlg-42", "hostName": "build-host"}, body["delegateMetaInfo"])
		require.Equal(t, []string{"st"}, r.eng.cleaned)
	}
}

// TestBadInput checks that data the handlers cannot run is a FAILURE answer in the family's
// shape, saying what is wrong, with the full body in the result's data.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, data, want string
	}{
		{"VM setup without a stage id", "DLITE_CI_VM_INITIALIZE_TASK", `{"setup_vm_request": {"pool_id": "p"}}`, `property "id" is missing`},
		{"VM setup without its request", "DLITE_CI_VM_INITIALIZE_TASK", `{}`, `property "setup_vm_request" is missing`},
		{"Docker setup without a stage id", "CI_DOCKER_INITIALIZE_TASK", `{"pool_id": "p"}`, "the stage runtime id (id) is missing"},
		{"a volume with neither temp nor host", "CI_DOCKER_INITIALIZE_TASK", `{"id": "s", "setup_request": {"volumes": [{}]}}`, "volume 0 needs exactly one of temp and host"},
		{"execute of an unknown stage", "DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "nope", "start_step_request": {"id": "s"}}}`, "stage not found"},
		{"execute without a stage id", "CI_DOCKER_EXECUTE_TASK", `{"start_step_request": {"id": "s"}}`, "the stage runtime id is missing"},
		{"execute without a step", "CI_DOCKER_EXECUTE_TASK", `{"stage_runtime_id": "s"}`, "the step (start_step_request) is missing"},
		{"malformed step", "DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "s", "start_step_request": {"id": "s", "timeout": "soon", "run": {"commands": "ls"}}}}`,
			"/execute_step_request/start_step_request/run/commands: value must be an array; /execute_step_request/start_step_request/timeout: value must be an integer"},
		{"an unknown pull policy", "DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "s", "start_step_request": {"id": "s", "pull": "Sometimes"}}}`, `unknown pull policy "Sometimes"`},
		{"a test-intelligence step", "DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "s", "start_step_request": {"id": "s", "kind": "RunTest"}}}`, "step kind RunTest is not supported by this runner"},
		{"a test-intelligence v2 step", "CI_DOCKER_EXECUTE_TASK", `{"stage_runtime_id": "s", "start_step_request": {"id": "s", "kind": "RunTestsV2"}}`, "step kind RunTestsV2 is not supported by this runner"},
		{"cleanup without a stage id", "CI_DOCKER_CLEANUP_TASK", `{"correlation_id": "c"}`, "the stage runtime id is missing"},
		{"data that is not an object", "DLITE_CI_VM_CLEANUP_TASK", `["stage"]`, "value must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t)
			r.eng.stages["s"] = engine.StageSpec{ID: "s"}
			o, body := r.run(tt.typ, tt.data)
			require.Equal(t, manager.CodeFailed, o.Code)
			status, msg := body["command_execution_status"], body["error_message"]
			if tt.typ[:3] == "CI_" {
				status, msg = body["commandExecutionStatus"], body["errorMessage"]
			}
			require.Equal(t, "FAILURE", status)
			require.Contains(t, msg, tt.want)
			require.ErrorContains(t, o.Err, tt.want)
			require.Empty(t, r.eng.steps, "nothing ran")
		})
	}
}

func TestSetupFailureStillPinsTheStage(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	r.eng.setupErr = fmt.Errorf("setup stage st: create network: %w", engine.ErrNotAllowed)
	o, body := r.run("CI_DOCKER_INITIALIZE_TASK", `{"id": "st"}`)
	require.Equal(t, manager.CodeFailed, o.Code)
	require.Equal(t, "FAILURE", body["commandExecutionStatus"])
	require.Equal(t, "setup stage st: create network: not allowed by the runner's configuration", body["errorMessage"])
	require.Equal(t, map[string]any{"id": "dlg-42", "hostName": "build-host"}, body["delegateMetaInfo"],
		"the cleanup of a half-built stage must come back to this runner")
}

func TestHostAddressIsAnAddress(t *testing.T) {
	t.Parallel()
	ip := net.ParseIP(ci.HostAddress())
	require.NotNil(t, ip, "the manager needs a non-empty address")
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	global := false
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			global = true
		}
	}
	require.Equal(t, global, !ip.IsLoopback(), "loopback only when the host has no other address")
}

// The CI_DOCKER_* JSON is partly inferred: keys the runner does not read are logged, and the task
// still runs.
func TestDockerUnknownKeysAreLogged(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	o, _ := r.run("CI_DOCKER_INITIALIZE_TASK", `{"id": "st", "poolID": "p", "infraType": "DOCKER", "accountIdentifier": "a"}`)
	require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
	require.Contains(t, r.logs.String(), `keys="[accountIdentifier infraType]"`)
	require.Contains(t, r.logs.String(), "schema=DockerInitializeData")

	r = newRunner(t)
	o, _ = r.run("CI_DOCKER_CLEANUP_TASK", `{"correlationID": "c", "id": "st"}`)
	require.Equal(t, manager.CodeOK, o.Code, "%v", o.Err)
	require.NotContains(t, r.logs.String(), "does not read", "both spellings are known")
}
