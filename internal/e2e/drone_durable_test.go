package e2e_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/mockmanager"
)

// updateLog is a proxy in front of a mock Drone server that can refuse step updates (503, as a
// server behind a failing load balancer does) and records, in order, the stage and step updates
// the server took.
type updateLog struct {
	ds      *mockmanager.DroneTestServer
	refuse  atomic.Bool
	refused atomic.Int64
	mu      sync.Mutex
	taken   []string
}

func newUpdateLog(t *testing.T, ds *mockmanager.DroneTestServer) (*updateLog, string) {
	t.Helper()
	u := &updateLog{ds: ds}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv.URL
}

func (u *updateLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	isStep := r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/rpc/v2/step/")
	isStage := r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/rpc/v2/stage/")
	if isStep && u.refuse.Load() {
		u.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !isStep && !isStage {
		u.ds.Handler().ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	u.ds.Handler().ServeHTTP(rec, r)
	if rec.Code == http.StatusOK {
		var v struct {
			Name   string          `json:"name"`
			Status droneapi.Status `json:"status"`
		}
		_ = json.Unmarshal(body, &v)
		what := "stage"
		if isStep {
			what = v.Name
		}
		u.mu.Lock()
		u.taken = append(u.taken, what+" "+string(v.Status))
		u.mu.Unlock()
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (u *updateLog) updates() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.taken...)
}

// Step updates the server refuses are kept and sent again, in their order, after the stage's own
// end and across a SIGKILL of the runner: the restarted runner delivers every one before the
// stage's final update, which lands last.
func TestDroneStepUpdatesSurviveRefusalsAndSIGKILLInOrder(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	u, url := newUpdateLog(t, ds)
	u.refuse.Store(true)
	spool := filepath.Join(t.TempDir(), "spool")
	env := droneRunnerEnv(url, ds.Secret(), "drone-ordered", spool, "exec", "DLITE_DOCKER=off")
	p := startProc(t, env)
	marker := filepath.Join(t.TempDir(), "second-ran")
	id := droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: first\n  commands: [echo one]\n"+
		"- name: second\n  depends_on: [first]\n  commands: [echo two, touch "+marker+"]\n", "exec")

	// The stage runs to its end while the server takes none of its step updates.
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, waitFor, 20*time.Millisecond,
		"the steps run though the server refuses their updates")
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "task finished") }, waitFor, 20*time.Millisecond,
		"the stage's outcome is handed over")
	require.Positive(t, u.refused.Load())
	b, err := ds.Build(id)
	require.NoError(t, err)
	require.Equal(t, droneapi.Status("running"), b.Stages[0].Stage.Status, "the final update waits behind the step updates")
	for _, s := range b.Stages[0].Steps {
		require.Equal(t, droneapi.Status("pending"), s.Step.Status, "step %s", s.Step.Name)
	}
	p.kill(t)

	u.refuse.Store(false)
	startProc(t, env)
	st := waitDrone(t, ds, id)
	require.Equal(t, droneapi.Status("success"), st.Stage.Status)
	steps := droneSteps(st)
	require.Equal(t, droneapi.Status("success"), steps["first"].Step.Status)
	require.Equal(t, droneapi.Status("success"), steps["second"].Step.Status)
	require.Contains(t, droneLog(t, steps["second"]), "two\n")
	want := []string{"stage running", "first running", "first success", "second running", "second success", "stage success"}
	// The proxy records an update once the server answered it, a moment after the server saved it.
	require.Eventually(t, func() bool { return len(u.updates()) >= len(want) }, waitFor, 20*time.Millisecond)
	require.Equal(t, want, u.updates(), "every update once, in order, the stage's end last")
}

// A runner killed in the middle of a stage answers it when it starts again: the stage and the step
// that ran end in error saying the runner stopped, the step not reached is skipped, the step's
// process is gone, and the runner takes new stages as before.
func TestDroneStageCutShortBySIGKILLIsAnsweredAfterARestart(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	spool := filepath.Join(t.TempDir(), "spool")
	env := droneRunnerEnv(ds.URL, ds.Secret(), "drone-cut-short", spool, "exec", "DLITE_DOCKER=off")
	p := startProc(t, env)
	pidFile := filepath.Join(t.TempDir(), "pid")
	id := droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: long\n  commands: [echo $$ > "+pidFile+"; exec sleep 120]\n"+
		"- name: after\n  depends_on: [long]\n  commands: [echo never]\n", "exec")
	var pid int
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
		return err == nil
	}, waitFor, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		b, err := ds.Build(id)
		return err == nil && droneSteps(b.Stages[0])["long"].Step.Status == "running"
	}, waitFor, 20*time.Millisecond, "the server knows the step runs")
	p.kill(t)

	restarted := startProc(t, env)
	st := waitDrone(t, ds, id)
	require.Equal(t, droneapi.Status("error"), st.Stage.Status, "%+v", st.Stage)
	require.Contains(t, st.Stage.Error, "the runner stopped while the task ran")
	steps := droneSteps(st)
	require.Equal(t, droneapi.Status("error"), steps["long"].Step.Status)
	require.Equal(t, "the runner stopped while the step ran", steps["long"].Step.Error)
	require.Equal(t, droneapi.Status("skipped"), steps["after"].Step.Status)
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, waitFor, 20*time.Millisecond,
		"the step's process is gone")
	require.Contains(t, restarted.out.String(), "answering a task an earlier run left unfinished")

	next := droneBuild(t, ds, "kind: pipeline\ntype: exec\nname: default\nclone: {disable: true}\nsteps:\n- name: hello\n  commands: [echo hello]\n", "exec")
	require.Equal(t, droneapi.Status("success"), waitDrone(t, ds, next).Stage.Status, "the runner takes work again")
}
