package mockmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

// answer sends a legacy-endpoint answer with data for a task the runner holds.
func (r *runner) answer(taskID, typ, data string) {
	r.t.Helper()
	res, err := r.c.SendTaskStatusWithResponse(context.Background(), taskID, r.id,
		&managerapi.SendTaskStatusParams{AccountId: r.account},
		managerapi.TaskResponse{Id: taskID, Type: typ, Code: managerapi.TaskResponseCodeOK, Data: json.RawMessage(data)})
	require.NoError(r.t, err)
	require.Equal(r.t, http.StatusOK, res.StatusCode(), string(res.Body))
}

func ciTask(typ, data string) mockmanager.NewTask {
	return mockmanager.NewTask{Type: typ, Data: new(json.RawMessage(data))}
}

// The answer to a stage's initialize task pins its execute and cleanup tasks to the delegate it
// names: others are neither offered them nor granted them.
func TestStageTasksArePinnedToTheInitializingDelegate(t *testing.T) {
	t.Parallel()
	families := []struct {
		name                 string
		init, exec, cleanup  mockmanager.NewTask
		initType, answerWith string
	}{
		{"VM", ciTask("DLITE_CI_VM_INITIALIZE_TASK", `{"setup_vm_request": {"id": "st-1"}}`),
			ciTask("DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "st-1", "start_step_request": {"id": "s"}}}`),
			ciTask("DLITE_CI_VM_CLEANUP_TASK", `{"stage_runtime_id": "st-1"}`),
			"DLITE_CI_VM_INITIALIZE_TASK", `{"command_execution_status": "SUCCESS", "delegate_meta_info": {"id": "%s"}}`},
		{"Docker", ciTask("CI_DOCKER_INITIALIZE_TASK", `{"id": "st-1"}`),
			ciTask("CI_DOCKER_EXECUTE_TASK", `{"stage_runtime_id": "st-1", "start_step_request": {"id": "s"}}`),
			ciTask("CI_DOCKER_CLEANUP_TASK", `{"correlation_id": "c", "id": "st-1"}`),
			"CI_DOCKER_INITIALIZE_TASK", `{"commandExecutionStatus": "SUCCESS", "delegateMetaInfo": {"id": "%s"}}`},
	}
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			mm := mockmanager.NewTest(t, mockmanager.Options{})
			types := []string{f.init.Type, f.exec.Type, f.cleanup.Type}
			a, b := newAuthedRunner(t, mm), newAuthedRunner(t, mm)
			a.register("runner-a", types, nil)
			b.register("runner-b", types, nil)

			initID := enqueue(t, mm, f.init)
			require.Equal(t, http.StatusOK, a.acquire(initID).StatusCode())
			a.answer(initID, f.initType, fmt.Sprintf(f.answerWith, a.id))

			for _, nt := range []mockmanager.NewTask{f.exec, f.cleanup} {
				id := enqueue(t, mm, nt)
				bt, _ := eventIDs(b.poll())
				require.NotContains(t, bt, id, "another delegate is not offered a pinned task")
				require.Equal(t, http.StatusConflict, b.acquire(id).StatusCode(), "nor granted it")
				at, _ := eventIDs(a.poll())
				require.Contains(t, at, id)
				require.Equal(t, http.StatusOK, a.acquire(id).StatusCode())
			}

			st, err := mm.Stage("st-1")
			require.NoError(t, err)
			require.Equal(t, a.id, *st.PinnedTo)
			require.Len(t, st.Tasks, 3)
			require.Equal(t, "st-1", *st.Tasks[0].StageId)
			require.Len(t, mm.Stages(), 1)
		})
	}
}

// Before the initialize task is answered, and for a stage of another delegate, nothing is pinned.
func TestUnpinnedStageTasksGoToAnyone(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	b := newAuthedRunner(t, mm)
	b.register("runner-b", []string{"DLITE_CI_VM_EXECUTE_TASK"}, nil)
	id := enqueue(t, mm, ciTask("DLITE_CI_VM_EXECUTE_TASK", `{"execute_step_request": {"stage_runtime_id": "st-9", "start_step_request": {"id": "s"}}}`))
	tasks, _ := eventIDs(b.poll())
	require.Contains(t, tasks, id)
	require.Equal(t, http.StatusOK, b.acquire(id).StatusCode())
	st, err := mm.Stage("st-9")
	require.NoError(t, err)
	require.Nil(t, st.PinnedTo)

	_, err = mm.Stage("nope")
	require.Error(t, err)
}

// A runner restarted on the same host (a new process token, the same host name, name, type and
// next-gen flag) gets its delegate id back; another host, another name or a deleted delegate
// gets a new one.
func TestReRegisteringDelegateKeepsItsID(t *testing.T) {
	t.Parallel()
	params := func(token, host, name string) managerapi.DelegateParams {
		return managerapi.DelegateParams{DelegateRandomToken: new(token), HostName: new(host), DelegateName: new(name),
			DelegateType: new("DOCKER"), Ng: new(true), SupportedTaskTypes: &[]string{}, Tags: &[]string{}}
	}
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	register := func(p managerapi.DelegateParams) string {
		t.Helper()
		res, err := r.c.RegisterDelegateWithResponse(context.Background(), &managerapi.RegisterDelegateParams{AccountId: r.account}, p)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		return *res.JSON200.Resource.DelegateId
	}
	first := register(params("token-1", "build-1", "runner"))
	require.Equal(t, first, register(params("token-2", "build-1", "runner")), "a restart on the same host")
	require.NotEqual(t, first, register(params("token-3", "build-2", "runner")), "another host")
	require.NotEqual(t, first, register(params("token-4", "build-1", "other")), "another name")
	ng := params("token-5", "build-1", "runner")
	ng.Ng = new(false)
	require.NotEqual(t, first, register(ng), "another generation")

	require.NoError(t, mm.DeleteDelegate(first))
	require.NotEqual(t, first, register(params("token-6", "build-1", "runner")), "a deleted delegate is not revived")
}

// The admin API lists a stage's tasks with their answers and the delegate it is pinned to.
func TestAdminStages(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	admin := newAdminClient(t, mm)
	ctx := context.Background()
	r := newAuthedRunner(t, mm)
	r.register("runner", []string{"CI_DOCKER_INITIALIZE_TASK"}, nil)

	created, err := admin.CreateTaskWithResponse(ctx, ciTask("CI_DOCKER_INITIALIZE_TASK", `{"id": "st-2", "poolID": "p"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.StatusCode(), string(created.Body))
	require.Equal(t, http.StatusOK, r.acquire(created.JSON201.Id).StatusCode())
	r.answer(created.JSON201.Id, "CI_DOCKER_INITIALIZE_TASK", `{"commandExecutionStatus": "SUCCESS", "delegateMetaInfo": {"id": "`+r.id+`"}}`)

	list, err := admin.ListStagesWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode(), string(list.Body))
	require.Len(t, *list.JSON200, 1)
	got, err := admin.GetStageWithResponse(ctx, "st-2")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode(), string(got.Body))
	require.Equal(t, r.id, *got.JSON200.PinnedTo)
	require.Len(t, got.JSON200.Tasks, 1)
	require.JSONEq(t, `{"commandExecutionStatus": "SUCCESS", "delegateMetaInfo": {"id": "`+r.id+`"}}`, string(*got.JSON200.Tasks[0].Responses[0].Data))

	missing, err := admin.GetStageWithResponse(ctx, "st-unknown")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, missing.StatusCode())
}

// A runner process replaced on the same host comes back under the same delegate id, but it never
// heard of the tasks the old process held: those go back to the queue once the old process has had
// the delegate timeout to deliver them. The same process registering again keeps them.
func TestTasksOfAReplacedProcessAreRequeued(t *testing.T) {
	t.Parallel()
	clk := newClock()
	mm := mockmanager.NewTest(t, mockmanager.Options{DelegateTimeout: time.Minute, Now: clk.Now})
	r := newAuthedRunner(t, mm)
	register := func(token string) string {
		t.Helper()
		res, err := r.c.RegisterDelegateWithResponse(context.Background(), &managerapi.RegisterDelegateParams{AccountId: r.account},
			managerapi.DelegateParams{DelegateRandomToken: new(token), HostName: new("build-1"), DelegateName: new("runner"),
				SupportedTaskTypes: &[]string{"SHELL"}, Tags: &[]string{}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		r.id = *res.JSON200.Resource.DelegateId
		return r.id
	}
	first := register("process-1")
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	require.Equal(t, http.StatusOK, r.acquire(taskID).StatusCode())

	require.Equal(t, first, register("process-1"), "the same process registering again")
	for range 2 {
		clk.Advance(50 * time.Second)
		require.Equal(t, http.StatusOK, r.heartbeat(first).StatusCode())
	}
	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State, "the same process still holds its task")

	require.Equal(t, first, register("process-2"), "a new process on the same host keeps the delegate id")
	clk.Advance(50 * time.Second)
	require.Equal(t, http.StatusOK, r.heartbeat(first).StatusCode())
	st, err = mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State, "the old process may still deliver it")

	clk.Advance(20 * time.Second)
	require.Equal(t, http.StatusOK, r.heartbeat(first).StatusCode())
	st, err = mm.WaitTask(waitCtx(t), taskID, func(st mockmanager.TaskStatus) bool { return st.State == mockmanager.StateQueued })
	require.NoError(t, err)
	require.Nil(t, st.AcquiredBy)
	tasks, _ := eventIDs(r.poll())
	require.Equal(t, []string{taskID}, tasks, "offered again, to the new process too")
}
