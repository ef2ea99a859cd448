package drone_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/retry"
	"github.com/dlite-dev/dlite/mockmanager"
)

var execFilter = drone.Filter{Kind: "pipeline", Type: "exec", Os: "linux", Arch: "amd64"}

func newBackend(t *testing.T, ds *mockmanager.DroneTestServer, machine string) *drone.Backend {
	t.Helper()
	b, err := drone.NewBackend(drone.BackendOptions{
		Client:  newClient(t, ds.URL, ds.Secret()),
		Filter:  execFilter,
		Machine: machine,
		WatchBackoff: func() *drone.Backoff {
			return drone.NewBackoff(retry.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}, retry.Policy{})
		},
	})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// TestBackendRunsAStageThroughThePort takes a stage the way the runtime does: a ping to
// register, an offer, an acquire that folds the details into the task, and a report whose logs
// and final stage land on the server.
func TestBackendRunsAStageThroughThePort(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := newBackend(t, ds, "runner-1")
	build := queue(t, ds)
	stageID := build.Stages[0].Stage.Id

	reg, err := b.Register(ctx, manager.Delegate{})
	require.NoError(t, err)
	require.Equal(t, "runner-1", reg.DelegateID)
	hb, err := b.Heartbeat(ctx, reg.DelegateID, manager.Delegate{})
	require.NoError(t, err)
	require.Equal(t, manager.StatusEnabled, hb.Status)

	ev, err := b.Offer(ctx, reg.DelegateID)
	require.NoError(t, err)
	require.Equal(t, &manager.Event{TaskID: strconv.FormatInt(stageID, 10), TaskType: drone.TaskType}, ev)

	task, err := b.Acquire(ctx, reg.DelegateID, ev.TaskID)
	require.NoError(t, err)
	require.Equal(t, drone.TaskType, task.Type)
	var st drone.StageTask
	require.NoError(t, json.Unmarshal(task.Data, &st))
	require.Equal(t, "runner-1", st.Stage.Machine)
	require.Equal(t, pipeline, string(st.Details.Config.Data))

	// The handler's part, cut short: start the stage with one step, then report its end.
	stage := st.Stage
	stage.Status, stage.Started = drone.Status("running"), time.Now().Unix()
	stage.Steps = []drone.Step{{Number: 1, Name: "greet", StepId: stage.Id, Status: "pending"}}
	client := newClient(t, ds.URL, ds.Secret())
	stage, err = client.UpdateStage(ctx, stage)
	require.NoError(t, err)
	stage.Status, stage.Stopped = "success", time.Now().Unix()
	stage.Steps[0].Status, stage.Steps[0].Stopped = "success", time.Now().Unix()
	data, err := json.Marshal(drone.StageReport{Stage: stage, Logs: []drone.StepLog{
		{StepId: stage.Steps[0].Id, Lines: []drone.Line{{Pos: 0, Out: "hi\n"}}},
	}})
	require.NoError(t, err)
	require.NoError(t, b.Report(ctx, manager.Result{TaskID: ev.TaskID, TaskType: drone.TaskType, Code: manager.CodeOK, Data: data}))

	got, err := ds.Stage(stageID)
	require.NoError(t, err)
	require.Equal(t, drone.Status("success"), got.Stage.Status)
	require.Equal(t, drone.Status("success"), got.Steps[0].Step.Status)
	require.True(t, got.Steps[0].Uploaded)
	require.Contains(t, got.Steps[0].Log, "hi")
}

// TestBackendTwoRunnersOneStage has two runners accept the same offered stage: one wins, the
// other gets the definite answer that another runner took it.
func TestBackendTwoRunnersOneStage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	a, c := newBackend(t, ds, "runner-a"), newBackend(t, ds, "runner-c")
	queue(t, ds)
	evA, err := a.Offer(ctx, "runner-a")
	require.NoError(t, err)
	evC, err := c.Offer(ctx, "runner-c")
	require.NoError(t, err)
	require.Equal(t, evA, evC, "a stage is offered until it is accepted")

	_, err = a.Acquire(ctx, "runner-a", evA.TaskID)
	require.NoError(t, err)
	_, err = c.Acquire(ctx, "runner-c", evC.TaskID)
	require.ErrorIs(t, err, errs.ErrAcquireConflict)

	again, err := a.Acquire(ctx, "runner-a", evA.TaskID)
	require.NoError(t, err, "an acquire tried again after a lost answer is still this runner's")
	require.Equal(t, evA.TaskID, again.ID)
}

// TestBackendCancelAbortsAndTheFinalUpdateLands cancels a running build: the watch names the
// stage on Aborts, and the runner's final update, refused once for its stale version, is sent
// again with the current one.
func TestBackendCancelAbortsAndTheFinalUpdateLands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 100 * time.Millisecond})
	b := newBackend(t, ds, "runner-1")
	build := queue(t, ds)
	ev, err := b.Offer(ctx, "runner-1")
	require.NoError(t, err)
	task, err := b.Acquire(ctx, "runner-1", ev.TaskID)
	require.NoError(t, err)
	var st drone.StageTask
	require.NoError(t, json.Unmarshal(task.Data, &st))
	stage := st.Stage
	stage.Status, stage.Started = "running", time.Now().Unix()
	stage.Steps = []drone.Step{{Number: 1, Name: "greet", StepId: stage.Id, Status: "pending"}}
	stage, err = newClient(t, ds.URL, ds.Secret()).UpdateStage(ctx, stage)
	require.NoError(t, err)

	// Several watches end with nothing before the cancel; none of it is lost in between.
	time.Sleep(300 * time.Millisecond)
	_, err = ds.CancelBuild(build.Build.Id)
	require.NoError(t, err)
	select {
	case id := <-b.Aborts():
		require.Equal(t, ev.TaskID, id)
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel never reached Aborts")
	}

	stage.Status, stage.ExitCode, stage.Stopped = "killed", 137, time.Now().Unix()
	stage.Steps[0].Status, stage.Steps[0].ExitCode = "killed", 137
	data, err := json.Marshal(drone.StageReport{Stage: stage})
	require.NoError(t, err)
	require.NoError(t, b.Report(ctx, manager.Result{TaskID: ev.TaskID, Code: manager.CodeFailed, Data: data}))
	got, err := ds.Stage(stage.Id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("killed"), got.Stage.Status)
	require.Equal(t, "runner-1", got.Stage.Machine)
}

// TestBackendReportWithoutData ends a stage whose handler gave no report as error, with the
// reason, so it is not left running on the server.
func TestBackendReportWithoutData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := newBackend(t, ds, "runner-1")
	queue(t, ds)
	ev, err := b.Offer(ctx, "runner-1")
	require.NoError(t, err)
	_, err = b.Acquire(ctx, "runner-1", ev.TaskID)
	require.NoError(t, err)
	require.NoError(t, b.Report(ctx, manager.Result{TaskID: ev.TaskID, Code: manager.CodeFailed, Error: "handler panicked"}))
	id, _ := strconv.ParseInt(ev.TaskID, 10, 64)
	got, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("error"), got.Stage.Status)
	require.Equal(t, "handler panicked", got.Stage.Error)
	require.Equal(t, 255, got.Stage.ExitCode)
}

// TestBackendRefusedSecret surfaces a refused secret as an unauthorized error, for the slow
// retry.
func TestBackendRefusedSecret(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b, err := drone.NewBackend(drone.BackendOptions{Client: newClient(t, ds.URL, "wrong"), Filter: execFilter, Machine: "m"})
	require.NoError(t, err)
	defer b.Close()
	_, err = b.Register(t.Context(), manager.Delegate{})
	require.ErrorIs(t, err, errs.ErrUnauthorized)
	_, err = b.Offer(t.Context(), "m")
	require.ErrorIs(t, err, errs.ErrUnauthorized)
}

// TestBackendEndsAStageWhoseDetailsFail ends a stage accepted here whose details the server
// refuses for good, rather than leave it taken and never run.
func TestBackendEndsAStageWhoseDetailsFail(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/rpc/v2/stage/") {
			http.Error(w, "sql: no rows in result set", http.StatusInternalServerError)
			return
		}
		ds.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	b, err := drone.NewBackend(drone.BackendOptions{Client: newClient(t, proxy.URL, ds.Secret()), Filter: execFilter, Machine: "m"})
	require.NoError(t, err)
	defer b.Close()
	queue(t, ds)
	ev, err := b.Offer(ctx, "m")
	require.NoError(t, err)
	_, err = b.Acquire(ctx, "m", ev.TaskID)
	require.Error(t, err)
	require.False(t, errs.Retryable(err))
	id, _ := strconv.ParseInt(ev.TaskID, 10, 64)
	got, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("error"), got.Stage.Status)
	require.Contains(t, got.Stage.Error, "could not read the stage's details")
}

// TestBackendReportOfAnAbortedStageWithoutData ends a stage aborted before its handler answered
// as killed.
func TestBackendReportOfAnAbortedStageWithoutData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := newBackend(t, ds, "runner-1")
	queue(t, ds)
	ev, err := b.Offer(ctx, "runner-1")
	require.NoError(t, err)
	_, err = b.Acquire(ctx, "runner-1", ev.TaskID)
	require.NoError(t, err)
	require.NoError(t, b.Report(ctx, manager.Result{TaskID: ev.TaskID, Code: manager.CodeFailed, Error: errs.ErrAborted.Error()}))
	id, _ := strconv.ParseInt(ev.TaskID, 10, 64)
	got, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("killed"), got.Stage.Status)
	require.Equal(t, 137, got.Stage.ExitCode)
}
