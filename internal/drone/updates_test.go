package drone_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

// stateBackend is a backend keeping its stages in dir, as a runner does on its state directory.
func stateBackend(t *testing.T, ds *mockmanager.DroneTestServer, dir string) *drone.Backend {
	t.Helper()
	b, err := drone.NewBackend(drone.BackendOptions{Client: newClient(t, ds.URL, ds.Secret()), Filter: execFilter,
		Machine: "runner-1", StateDir: dir})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// acquire offers and accepts the build's stage through b and returns the task's data.
func acquire(t *testing.T, b *drone.Backend) (string, drone.StageTask) {
	t.Helper()
	ev, err := b.Offer(t.Context(), "runner-1")
	require.NoError(t, err)
	require.NotNil(t, ev)
	task, err := b.Acquire(t.Context(), "runner-1", ev.TaskID)
	require.NoError(t, err)
	var st drone.StageTask
	require.NoError(t, json.Unmarshal(task.Data, &st))
	return ev.TaskID, st
}

// send delivers one update or outcome as the runtime's reporter does.
func send(t *testing.T, b *drone.Backend, taskID string, update int, v any) error {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return b.Report(t.Context(), manager.Result{TaskID: taskID, Update: update, Code: manager.CodeOK, Data: data})
}

func startOf(st drone.StageTask) drone.Stage {
	stage := st.Stage
	stage.Status, stage.Started = "running", time.Now().Unix()
	stage.Steps = []drone.Step{
		{Number: 1, Name: "build", StepId: stage.Id, Status: "pending"},
		{Number: 2, Name: "test", StepId: stage.Id, Status: "pending"},
	}
	return stage
}

func stepNamed(t *testing.T, ds *mockmanager.DroneTestServer, stageID int64, name string) drone.Step {
	t.Helper()
	st, err := ds.Stage(stageID)
	require.NoError(t, err)
	for _, s := range st.Steps {
		if s.Step.Name == name {
			return s.Step
		}
	}
	t.Fatalf("stage %d has no step %q", stageID, name)
	return drone.Step{}
}

// A handler names steps by number; the backend sends its updates with the ids and versions the
// server gave, and its outcome and logs too. The book of a stage outlives the backend: a new one
// on the same directory (a restarted runner) goes on where the first stopped, and a start sent
// again is not sent twice. Once reported, the stage leaves the book.
func TestUpdatesNameStepsByNumberAcrossARestart(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	dir := t.TempDir()
	first := stateBackend(t, ds, dir)
	queue(t, ds)
	taskID, st := acquire(t, first)
	id, _ := strconv.ParseInt(taskID, 10, 64)

	start := startOf(st)
	require.NoError(t, send(t, first, taskID, 1, drone.StageUpdate{Stage: start}))
	require.NoError(t, send(t, first, taskID, 2, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "running", Started: time.Now().Unix()}}))
	require.Equal(t, drone.Status("running"), stepNamed(t, ds, id, "build").Status)

	// The runner stops; its successor has the stage in its book.
	first.Close()
	second := stateBackend(t, ds, dir)
	unfinished, err := second.Unfinished()
	require.NoError(t, err)
	require.Equal(t, []manager.Unfinished{{TaskID: taskID, TaskType: drone.TaskType}}, unfinished)

	require.NoError(t, send(t, second, taskID, 1, drone.StageUpdate{Stage: start}), "a start sent again is taken as done")
	st2, err := ds.Stage(id)
	require.NoError(t, err)
	require.Len(t, st2.Steps, 2, "the steps were not inserted twice")
	require.NoError(t, send(t, second, taskID, 3, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "success", Started: start.Started, Stopped: time.Now().Unix()}}))
	require.Equal(t, drone.Status("success"), stepNamed(t, ds, id, "build").Status)
	require.NoError(t, send(t, second, taskID, 2, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "running", Started: start.Started}}),
		"an earlier update sent again after a later one is taken as done")
	require.Equal(t, drone.Status("success"), stepNamed(t, ds, id, "build").Status, "and changes nothing")

	final := start
	final.Status, final.Stopped = "success", time.Now().Unix()
	final.Steps[0].Status, final.Steps[0].Stopped = "success", time.Now().Unix()
	final.Steps[1].Status = "skipped"
	require.NoError(t, send(t, second, taskID, 0, drone.StageReport{Stage: final,
		Logs: []drone.StepLog{{Number: 1, Lines: []drone.Line{{Out: "built\n"}}}}}))
	got, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("success"), got.Stage.Status)
	require.Equal(t, drone.Status("skipped"), stepNamed(t, ds, id, "test").Status)
	require.Contains(t, stepLog(t, ds, id, "build"), "built")

	unfinished, err = second.Unfinished()
	require.NoError(t, err)
	require.Empty(t, unfinished)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "a reported stage leaves no file behind")
}

func stepLog(t *testing.T, ds *mockmanager.DroneTestServer, stageID int64, name string) string {
	t.Helper()
	st, err := ds.Stage(stageID)
	require.NoError(t, err)
	for _, s := range st.Steps {
		if s.Step.Name == name {
			return s.Log
		}
	}
	return ""
}

// A stage whose runner stopped in its middle is answered, after a restart, as an error: the step
// that ran ends in error too, saying why, and the step that had not started is skipped.
func TestInterruptedStageEndsInErrorWithItsSteps(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	dir := t.TempDir()
	first := stateBackend(t, ds, dir)
	queue(t, ds)
	taskID, st := acquire(t, first)
	id, _ := strconv.ParseInt(taskID, 10, 64)
	require.NoError(t, send(t, first, taskID, 1, drone.StageUpdate{Stage: startOf(st)}))
	require.NoError(t, send(t, first, taskID, 2, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "running", Started: time.Now().Unix()}}))
	first.Close()

	second := stateBackend(t, ds, dir)
	require.NoError(t, second.Report(t.Context(), manager.Result{TaskID: taskID, TaskType: drone.TaskType,
		Code: manager.CodeFailed, Error: errs.ErrInterrupted.Error()}))
	got, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, drone.Status("error"), got.Stage.Status)
	require.Equal(t, 255, got.Stage.ExitCode)
	require.Contains(t, got.Stage.Error, "the runner stopped while the task ran")
	build := stepNamed(t, ds, id, "build")
	require.Equal(t, drone.Status("error"), build.Status)
	require.Equal(t, "the runner stopped while the step ran", build.Error)
	require.NotZero(t, build.Stopped)
	require.Equal(t, drone.Status("skipped"), stepNamed(t, ds, id, "test").Status)
}

// A live log batch waits for its step's start to reach the server; it fails, rather than waits on,
// a step that has ended or never starts.
func TestOpenStepWaitsForTheStepsStart(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := stateBackend(t, ds, filepath.Join(t.TempDir(), "book"))
	queue(t, ds)
	taskID, st := acquire(t, b)
	id, _ := strconv.ParseInt(taskID, 10, 64)

	opened := make(chan int64, 1)
	go func() {
		stepID, err := b.OpenStep(t.Context(), id, 1)
		if err == nil {
			opened <- stepID
		}
		close(opened)
	}()
	require.NoError(t, send(t, b, taskID, 1, drone.StageUpdate{Stage: startOf(st)}))
	select {
	case <-opened:
		t.Fatal("the step is open before its start was delivered")
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, send(t, b, taskID, 2, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "running", Started: time.Now().Unix()}}))
	select {
	case stepID := <-opened:
		require.Equal(t, stepNamed(t, ds, id, "build").Id, stepID)
	case <-time.After(10 * time.Second):
		t.Fatal("the step did not open")
	}

	require.NoError(t, send(t, b, taskID, 3, drone.StageUpdate{Step: drone.Step{Number: 1, Name: "build", Status: "failure", ExitCode: 1}}))
	_, err := b.OpenStep(t.Context(), id, 1)
	require.ErrorContains(t, err, "has ended")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = b.OpenStep(ctx, id, 2)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// Updates of a stage that is not held here are refused for good, with what was wrong.
func TestUpdateOfAStageNotHeldHere(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := stateBackend(t, ds, "")
	err := send(t, b, "42", 1, drone.StageUpdate{Step: drone.Step{Number: 1, Status: "running"}})
	require.ErrorContains(t, err, "not held by this runner")
	require.False(t, errs.Retryable(err))
}
