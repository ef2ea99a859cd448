package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The README's CI walk-through: a mock manager and a runner started as in the README, a stage's
// setup, two steps and cleanup enqueued with plain HTTP calls (curl in the README), the stage read
// back with its pinning and answers, and a step's log read back masked.
func TestREADMECIStageSession(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	mmProc, url := startMockManager(t, "my-account", secret)
	runner := startBinary(t, baseEnv(t,
		"DLITE_ACCOUNT_ID=my-account",
		"DLITE_ACCOUNT_SECRET="+secret,
		"DLITE_MANAGER_ENDPOINT="+url,
		"DLITE_SPOOL_DIR="+t.TempDir(),
		"DLITE_POLL_INTERVAL_MILLISECS=100",
		"DLITE_HTTP_ADDR=127.0.0.1:0",
	), "run")

	status, logs := httpDo(t, http.MethodGet, url+"/admin/logs/config", "", nil)
	require.Equal(t, http.StatusOK, status, string(logs))
	post := func(body string) {
		t.Helper()
		status, raw := httpDo(t, http.MethodPost, url+"/admin/tasks", body, nil)
		require.Equal(t, http.StatusCreated, status, string(raw))
	}
	type answer struct {
		Code string
		Data map[string]any
	}
	var stage struct {
		PinnedTo string `json:"pinnedTo"`
		Tasks    []struct {
			Type      string
			State     string
			Responses []answer
		}
	}
	// waitStage waits until the stage's n tasks are all answered.
	waitStage := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool {
			status, raw := httpDo(t, http.MethodGet, url+"/admin/stages/stage-1", "", nil)
			require.Equal(t, http.StatusOK, status, string(raw))
			require.NoError(t, json.Unmarshal(raw, &stage))
			done := 0
			for _, task := range stage.Tasks {
				if task.State == "done" {
					done++
				}
			}
			return len(stage.Tasks) == n && done == n
		}, waitFor, 50*time.Millisecond)
	}

	post(`{"type":"DLITE_CI_VM_INITIALIZE_TASK","timeout":600,"data":{"setup_vm_request":{"id":"stage-1","pool_id":"local",
  "log_key":"stage-1/setup","setup_request":{"envs":{"CI":"true"},"secrets":["hunter2"],"log_config":` + string(logs) + `}}}}`)
	waitStage(1)
	require.NotEmpty(t, stage.PinnedTo)
	require.Equal(t, "SUCCESS", stage.Tasks[0].Responses[0].Data["command_execution_status"])

	post(`{"type":"DLITE_CI_VM_EXECUTE_TASK","timeout":600,"data":{"execute_step_request":{"stage_runtime_id":"stage-1",
  "start_step_request":{"id":"step-1","name":"Greet","log_key":"stage-1/step-1",
  "run":{"entrypoint":["sh","-c"],"commands":["echo hello from $(hostname); echo the password is hunter2; GREETING=hi"]},
  "output_vars":["GREETING"]}}}}`)
	post(`{"type":"DLITE_CI_VM_EXECUTE_TASK","timeout":600,"data":{"execute_step_request":{"stage_runtime_id":"stage-1",
  "start_step_request":{"id":"step-2","name":"Fail","log_key":"stage-1/step-2",
  "run":{"entrypoint":["sh","-c"],"commands":["echo about to fail; exit 2"]}}}}}`)
	waitStage(3)
	require.Equal(t, map[string]any{"GREETING": "hi"}, stage.Tasks[1].Responses[0].Data["output_vars"])
	require.Equal(t, "FAILED", stage.Tasks[2].Responses[0].Code)
	require.Equal(t, "exit status 2", stage.Tasks[2].Responses[0].Data["error_message"])

	status, raw := httpDo(t, http.MethodGet, url+"/admin/logs/blob?key=stage-1/step-1", "", nil)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "the password is **************")
	require.False(t, strings.Contains(string(raw), "hunter2"), "the secret is masked")

	post(`{"type":"DLITE_CI_VM_CLEANUP_TASK","timeout":900,"data":{"pool_id":"local","stage_runtime_id":"stage-1","log_key":"stage-1"}}`)
	waitStage(4)
	require.Equal(t, "SUCCESS", stage.Tasks[3].Responses[0].Data["command_execution_status"])
	require.Equal(t, stage.PinnedTo, stage.Tasks[3].Responses[0].Data["delegate_meta_info"].(map[string]any)["id"])

	runner.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, runner.wait(t))
	mmProc.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, mmProc.wait(t))
}
