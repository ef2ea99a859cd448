package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// runnerEnv is the environment of `dlite run` against the mock manager, polling and beating fast.
func runnerEnv(t *testing.T, mm *mockmanager.TestServer, vars ...string) []string {
	t.Helper()
	return baseEnv(t, append([]string{
		"DLITE_MANAGER_ENDPOINT=" + mm.URL,
		"DLITE_ACCOUNT_ID=" + mm.AccountID(),
		"DLITE_ACCOUNT_SECRET=" + mm.AccountSecret(),
		"DLITE_SPOOL_DIR=" + t.TempDir(),
		"DLITE_POLL_INTERVAL_MILLISECS=50",
		"DLITE_HEARTBEAT_INTERVAL=1s",
		"DLITE_HTTP_ADDR=off",
	}, vars...)...)
}

func newTask(t *testing.T, typ string, data any, timeout int64) mockmanager.NewTask {
	t.Helper()
	b, err := json.Marshal(data)
	require.NoError(t, err)
	raw := json.RawMessage(b)
	return mockmanager.NewTask{Type: typ, Data: &raw, Timeout: &timeout}
}

func enqueue(t *testing.T, mm *mockmanager.TestServer, nt mockmanager.NewTask) string {
	t.Helper()
	id, err := mm.Enqueue(nt)
	require.NoError(t, err)
	return id
}

func waitTask(t *testing.T, mm *mockmanager.TestServer, id string, cond func(mockmanager.TaskStatus) bool) mockmanager.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	st, err := mm.WaitTask(ctx, id, cond)
	require.NoError(t, err)
	return st
}

func isAcquired(st mockmanager.TaskStatus) bool { return st.Acquisitions > 0 }
func isAnswered(st mockmanager.TaskStatus) bool { return len(st.Responses) > 0 }

func errorOf(r mockmanager.RecordedResponse) string {
	if r.Error == nil {
		return ""
	}
	return *r.Error
}

// The first SIGTERM stops polling at once, lets the running task finish and reports it, and the
// process exits 0; a task queued after the signal is never acquired.
func TestSIGTERMDrainsRunningTasks(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := startBinary(t, runnerEnv(t, mm), "run")
	running := enqueue(t, mm, newTask(t, "SLEEP_TASK", map[string]any{"milliseconds": 1500}, 60))
	waitTask(t, mm, running, isAcquired)

	p.signal(t, syscall.SIGTERM)
	p.stderr.line(t, "stopped taking work; draining running tasks")
	late := enqueue(t, mm, newTask(t, "SLEEP_TASK", map[string]any{"milliseconds": 1}, 60))

	require.Equal(t, 0, p.wait(t))
	st, err := mm.Task(running)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1, "reported before the process exited")
	require.Equal(t, "OK", st.Responses[0].Code)
	ls, err := mm.Task(late)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, ls.State)
	require.Empty(t, ls.AcquireAttempts)
}

// A second signal during the drain cancels the running task, which is reported FAILED as
// cancelled by the shutdown, and the process exits 0.
func TestSecondSignalCancelsRunningTasks(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := startBinary(t, runnerEnv(t, mm), "run")
	long := enqueue(t, mm, newTask(t, "SHELL_SCRIPT_TASK", map[string]any{"script": "sleep 60"}, 120))
	waitTask(t, mm, long, isAcquired)

	p.signal(t, syscall.SIGTERM)
	p.stderr.line(t, "stopped taking work; draining running tasks")
	p.signal(t, syscall.SIGINT)

	require.Equal(t, 0, p.wait(t))
	st, err := mm.Task(long)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "runner shutting down", errorOf(st.Responses[0]))
}

// When DLITE_SHUTDOWN_GRACE ends, the running task is cancelled and reported FAILED as cancelled
// by the shutdown, and the process exits 0.
func TestShutdownGraceEndCancelsRunningTasks(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	p := startBinary(t, runnerEnv(t, mm, "DLITE_SHUTDOWN_GRACE=1s"), "run")
	long := enqueue(t, mm, newTask(t, "SHELL_SCRIPT_TASK", map[string]any{"script": "sleep 60"}, 120))
	waitTask(t, mm, long, isAcquired)

	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t))
	st, err := mm.Task(long)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "runner shutting down", errorOf(st.Responses[0]))
	require.Contains(t, p.stderr.String(), "drain ended with tasks still running; cancelling them")
}

// startMockManager runs `dlite mock-manager` on a free loopback port and returns its URL.
func startMockManager(t *testing.T, account, secret string) (*process, string) {
	t.Helper()
	p := startBinary(t, baseEnv(t, "DLITE_ACCOUNT_ID="+account, "DLITE_ACCOUNT_SECRET="+secret),
		"mock-manager", "--addr", "127.0.0.1:0")
	line := p.stdout.line(t, "mock manager listening on ")
	url := strings.Fields(strings.TrimPrefix(line, "mock manager listening on "))[0]
	return p, url
}

// httpDo sends a request and returns the status and decoded JSON body.
func httpDo(t *testing.T, method, url, body string, header map[string]string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// The README's session: a mock manager and a runner started from the environment, a task
// enqueued and watched with plain HTTP calls (curl in the README) until it is done.
func TestREADMECurlSession(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	mmProc, url := startMockManager(t, "my-account", secret)
	runner := startBinary(t, baseEnv(t,
		"DLITE_ACCOUNT_ID=my-account",
		"DLITE_ACCOUNT_SECRET="+secret,
		"DLITE_MANAGER_ENDPOINT="+url,
		"DLITE_SPOOL_DIR="+t.TempDir(),
		// The README leaves the status page on its default port; a test must not depend on it.
		"DLITE_HTTP_ADDR=127.0.0.1:0",
	), "run")

	status, raw := httpDo(t, http.MethodPost, url+"/admin/tasks",
		`{"type":"SHELL_SCRIPT_TASK","data":{"script":"echo hello; GREETING=hi","outputVars":["GREETING"]},"timeout":60}`, nil)
	require.Equal(t, http.StatusCreated, status, string(raw))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(raw, &created))
	require.True(t, strings.HasPrefix(created.ID, "task-"), created.ID)

	var task struct {
		State     string
		Responses []struct {
			Code string
			Data struct {
				Output     string
				OutputVars map[string]string
			}
		}
	}
	require.Eventually(t, func() bool {
		status, raw := httpDo(t, http.MethodGet, url+"/admin/tasks/"+created.ID, "", nil)
		require.Equal(t, http.StatusOK, status, string(raw))
		require.NoError(t, json.Unmarshal(raw, &task))
		return task.State == "done"
	}, waitFor, 50*time.Millisecond)
	require.Len(t, task.Responses, 1)
	require.Equal(t, "OK", task.Responses[0].Code)
	require.Equal(t, "hello\n", task.Responses[0].Data.Output)
	require.Equal(t, map[string]string{"GREETING": "hi"}, task.Responses[0].Data.OutputVars)

	status, raw = httpDo(t, http.MethodGet, url+"/admin/delegates", "", nil)
	require.Equal(t, http.StatusOK, status)
	var ds []struct {
		DelegateID         string `json:"delegateId"`
		SupportedTaskTypes []string
		Status             string
	}
	require.NoError(t, json.Unmarshal(raw, &ds))
	require.Len(t, ds, 1)
	require.NotEmpty(t, ds[0].DelegateID)
	require.Equal(t, "ENABLED", ds[0].Status)
	require.Equal(t, []string{"CI_DOCKER_CLEANUP_TASK", "CI_DOCKER_EXECUTE_TASK", "CI_DOCKER_INITIALIZE_TASK",
		"DLITE_CI_VM_CLEANUP_TASK", "DLITE_CI_VM_EXECUTE_TASK", "DLITE_CI_VM_INITIALIZE_TASK",
		"HTTP_TASK", "SHELL_SCRIPT_TASK", "SLEEP_TASK"}, ds[0].SupportedTaskTypes, "dlite run serves the CI stage tasks too")

	runner.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, runner.wait(t))
	mmProc.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, mmProc.wait(t))
}

// mintToken makes a Delegate token as a runner does: a JWE (dir, A128GCM) of the account's claims
// encrypted with the hex secret.
func mintToken(t *testing.T, account, secret string) string {
	t.Helper()
	key, err := hex.DecodeString(secret)
	require.NoError(t, err)
	enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: key},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	require.NoError(t, err)
	now := time.Now()
	tok, err := jwt.Encrypted(enc).Claims(jwt.Claims{
		Subject: account, Issuer: "issuer", Audience: jwt.Audience{"audience"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(20 * time.Minute)), ID: uuid.NewString(),
	}).Serialize()
	require.NoError(t, err)
	return tok
}

// The mock manager binary refuses a register body that breaks the contract with a 400 naming the
// field, and a token minted from another secret with a 401.
func TestMockManagerRefusesBadRequests(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	p, url := startMockManager(t, "acct", secret)
	register := url + "/api/agent/delegates/register?accountId=acct"
	good := map[string]string{"Authorization": "Delegate " + mintToken(t, "acct", secret)}

	status, raw := httpDo(t, http.MethodPost, register, `{"delegateName":"r","supportedTaskTypes":"SHELL_SCRIPT_TASK"}`, good)
	require.Equal(t, http.StatusBadRequest, status, string(raw))
	require.Contains(t, string(raw), "supportedTaskTypes")

	wrong := map[string]string{"Authorization": "Delegate " + mintToken(t, "acct", randomSecret(t))}
	status, raw = httpDo(t, http.MethodPost, register, `{"delegateName":"r","supportedTaskTypes":["SHELL_SCRIPT_TASK"]}`, wrong)
	require.Equal(t, http.StatusUnauthorized, status, string(raw))

	status, raw = httpDo(t, http.MethodPost, register, `{"delegateName":"r","supportedTaskTypes":["SHELL_SCRIPT_TASK"]}`, good)
	require.Equal(t, http.StatusOK, status, string(raw))
	require.Contains(t, string(raw), "delegateId")

	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t))
}

// `dlite mock-manager` exits 2, saying what is wrong, for a missing account id, a malformed
// secret and an unknown log format.
func TestMockManagerRejectsBadSettings(t *testing.T) {
	t.Parallel()
	secret := randomSecret(t)
	cases := []struct {
		name string
		env  []string
		args []string
		says string
	}{
		{"missing account id", []string{"DLITE_ACCOUNT_SECRET=" + secret}, nil, "account id is missing"},
		{"secret not hex", []string{"DLITE_ACCOUNT_ID=a", "DLITE_ACCOUNT_SECRET=not-a-secret"}, nil, "must be 32 hex characters"},
		{"secret too short", nil, []string{"--account-id", "a", "--account-secret", "abcd"}, "must be 32 hex characters"},
		{"bad log format", []string{"DLITE_ACCOUNT_ID=a", "DLITE_ACCOUNT_SECRET=" + secret}, []string{"--log-format", "xml"}, "--log-format must be text or json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, baseEnv(t, c.env...), append([]string{"mock-manager", "--addr", "127.0.0.1:0"}, c.args...)...)
			require.Equal(t, 2, p.wait(t))
			require.Contains(t, p.stderr.String(), c.says)
			require.NotContains(t, p.stderr.String(), secret, "the secret is never echoed")
		})
	}
}

// `dlite version` prints the version and commit the binary was built with.
func TestVersion(t *testing.T) {
	t.Parallel()
	p := startBinary(t, baseEnv(t), "version")
	require.Equal(t, 0, p.wait(t))
	require.Equal(t, "dlite "+testVersion+" (commit "+testCommit+")\n", p.stdout.String())
}

// `dlite run --help` exits 0 and documents every DLITE_ setting of the configuration.
func TestRunHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	p := startBinary(t, baseEnv(t), "run", "--help")
	require.Equal(t, 0, p.wait(t))
	help := p.stdout.String() + p.stderr.String()
	vars := envNames(reflect.TypeFor[dlite.Config]())
	require.Greater(t, len(vars), 20, "the configuration's settings are found")
	for _, v := range vars {
		require.Contains(t, help, v)
	}
}

// envNames returns the env tags of a struct's fields, nested structs included.
func envNames(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		if name := f.Tag.Get("env"); name != "" {
			out = append(out, name)
		} else if f.Type.Kind() == reflect.Struct && f.IsExported() {
			out = append(out, envNames(f.Type)...)
		}
	}
	return out
}

// `dlite run` with an empty environment runs the demonstration: every example task finishes with
// the code it is meant to, the CI stage's step logs are read back with the stage secret masked, and
// the process ends by itself with exit 0.
func TestDemoWithAnEmptyEnvironment(t *testing.T) {
	t.Parallel()
	p := startBinary(t, []string{"HOME=" + t.TempDir()}, "run")
	require.Equal(t, 0, p.wait(t), "stdout:\n%s", p.stdout)

	out := p.stdout.String()
	queued := regexp.MustCompile(`(?m)^\[queued\]\s+(task-\S+)`).FindAllStringSubmatch(out, -1)
	require.Len(t, queued, 10, out)
	finished := map[string][2]string{}
	for _, m := range regexp.MustCompile(`(?m)^\[finished\]\s+(task-\S+)\s+(\S+)\s+\(expected (\S+)\)`).FindAllStringSubmatch(out, -1) {
		finished[m[1]] = [2]string{m[2], m[3]}
	}
	want := []string{"OK", "OK", "FAILED", "TIMEOUT", "FAILED", // the single tasks
		"OK", "OK", "OK", "FAILED", "OK"} // the CI stage: setup, output variable, container, failing step, cleanup
	for i, q := range queued {
		got, ok := finished[q[1]]
		require.True(t, ok, "task %s has a [finished] line:\n%s", q[1], out)
		require.Equal(t, want[i], got[0], "task %d (%s):\n%s", i+1, q[1], out)
		require.Equal(t, want[i], got[1], "the demo expects what it gets")
	}
	require.Contains(t, out, "all 10 tasks finished (10 as expected)")
	require.Regexp(t, `(?m)^\s+output: \{"commandExecutionStatus":"SUCCESS","outputVars":\{"GREETING":"hi"\}\}$`, out)
	require.Regexp(t, `(?m)^\s+log demo-stage-\S+/greet \| the secret is \*+$`, out, "the stage secret is masked in the log")
	require.NotContains(t, out, "hunter2")
	require.Regexp(t, `(?m)^\s+log demo-stage-\S+/fail \| about to fail$`, out)
}

// DLITE_DEMO=drone runs one Drone pipeline on an embedded mock Drone server and narrates it: the
// clone of a repository it makes, parallel steps, an ignored failure, a skipped step, the logs
// with the secret masked.
func TestDroneDemo(t *testing.T) {
	t.Parallel()
	p := startBinary(t, []string{"HOME=" + t.TempDir(), "DLITE_DEMO=drone", "PATH=" + os.Getenv("PATH")}, "run")
	require.Equal(t, 0, p.wait(t), "stdout:\n%s", p.stdout)
	out := p.stdout.String()
	require.Regexp(t, `(?m)^\[step\]\s+clone\s+success \(exit 0\)$`, out, "git is installed here (.ci/test-deps), so the demonstration clones")
	require.Regexp(t, `(?m)^\s+\+ git fetch origin refs/heads/main$`, out)
	require.Regexp(t, `(?m)^\s+The demonstration's repository, as the clone step fetched it\.$`, out, "the build step reads the cloned file")
	require.Regexp(t, `(?m)^\[step\]\s+lint\s+failure \(exit 1\), ignored: failure: ignore$`, out)
	require.Regexp(t, `(?m)^\[step\]\s+notify-failure\s+skipped$`, out)
	require.Regexp(t, `(?m)^\[step\]\s+package\s+success \(exit 0\)$`, out)
	require.Regexp(t, `(?m)^\[stage\]\s+default\s+success on \S+$`, out)
	require.Regexp(t, `(?m)^\s+version=1\.4\.2$`, out, "a later step reads an earlier one's output")
	require.Regexp(t, `(?m)^\s+packaged with token \*+$`, out, "the secret is masked")
	require.Contains(t, out, "ended success, as expected")
}
