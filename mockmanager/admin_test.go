package mockmanager_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	admin := newAdminClient(t, mm)
	ctx := context.Background()

	created, err := admin.CreateTaskWithResponse(ctx, adminapi.NewTask{
		Type: "HTTP", Data: new(json.RawMessage(`{"url":"http://example.invalid"}`)),
		Timeout: new(int64(5)), RunnerResponse: new(true), Tags: &[]string{"linux"},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, created.StatusCode(), string(created.Body))
	id := created.JSON201.Id

	got, err := admin.GetTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode(), string(got.Body))
	require.Equal(t, "HTTP", got.JSON200.Type)
	require.Equal(t, adminapi.TaskStateNameQueued, got.JSON200.State)
	require.Equal(t, int64(5), *got.JSON200.Timeout)
	require.True(t, *got.JSON200.RunnerResponse)
	require.Equal(t, []string{"linux"}, *got.JSON200.Tags)
	require.Empty(t, got.JSON200.Responses)

	r := newAuthedRunner(t, mm)
	delegateID := r.register("runner", []string{"HTTP"}, []string{"linux"})
	acq := r.acquire(id)
	require.Equal(t, http.StatusOK, acq.StatusCode())
	require.JSONEq(t, `{"url":"http://example.invalid"}`, string(*acq.JSON200.Data))
	require.True(t, *acq.JSON200.RunnerResponse)
	second, err := admin.CreateTaskWithResponse(ctx, adminapi.NewTask{Type: "HTTP"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, second.StatusCode())

	all, err := admin.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, all.StatusCode(), string(all.Body))
	require.Len(t, *all.JSON200, 2)
	require.Equal(t, id, (*all.JSON200)[0].Id, "oldest first")
	queued, err := admin.ListTasksWithResponse(ctx, &adminapi.ListTasksParams{State: new(adminapi.TaskStateNameQueued)})
	require.NoError(t, err)
	require.Len(t, *queued.JSON200, 1)
	require.Equal(t, second.JSON201.Id, (*queued.JSON200)[0].Id)

	aborted, err := admin.AbortTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, aborted.StatusCode(), string(aborted.Body))
	require.Equal(t, adminapi.TaskStateNameAborted, aborted.JSON202.State)
	_, aborts := eventIDs(r.poll())
	require.Equal(t, []string{id}, aborts)

	delegates, err := admin.ListDelegatesWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, delegates.StatusCode(), string(delegates.Body))
	require.Len(t, *delegates.JSON200, 1)
	require.Equal(t, delegateID, (*delegates.JSON200)[0].DelegateId)
	require.Equal(t, adminapi.DelegateStatusENABLED, (*delegates.JSON200)[0].Status)
	deleted, err := admin.DeleteDelegateWithResponse(ctx, delegateID)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, deleted.StatusCode())
	require.Equal(t, adminapi.DelegateStatusDELETED, mm.Delegates()[0].Status)

	faults, err := admin.SetFaultsWithResponse(ctx, adminapi.Faults{ErrorRate: new(float32(0.25)), LatencyMs: new(10)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, faults.StatusCode(), string(faults.Body))
	require.InDelta(t, 0.25, *faults.JSON200.ErrorRate, 1e-6)
	current, err := admin.GetFaultsWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, *current.JSON200.LatencyMs)
	require.Nil(t, current.JSON200.ResetRate)
}

func TestAdminAPIRefusals(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	admin := newAdminClient(t, mm)
	ctx := context.Background()

	t.Run("task without type", func(t *testing.T) {
		res, err := admin.CreateTaskWithBodyWithResponse(ctx, "application/json", strings.NewReader(`{"data":{}}`))
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.StatusCode(), string(res.Body))
		require.Contains(t, res.JSON400.Message, "type")
	})
	t.Run("negative timeout", func(t *testing.T) {
		res, err := admin.CreateTaskWithBodyWithResponse(ctx, "application/json", strings.NewReader(`{"type":"SHELL","timeout":-1}`))
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.StatusCode(), string(res.Body))
		require.Contains(t, res.JSON400.Message, "timeout")
	})
	t.Run("unknown state", func(t *testing.T) {
		res, err := admin.ListTasksWithResponse(ctx, &adminapi.ListTasksParams{State: new(adminapi.TaskStateName("lost"))})
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.StatusCode(), string(res.Body))
		require.Contains(t, res.JSON400.Message, "state")
	})
	t.Run("rate above one", func(t *testing.T) {
		res, err := admin.SetFaultsWithBodyWithResponse(ctx, "application/json", strings.NewReader(`{"errorRate":2}`))
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, res.StatusCode(), string(res.Body))
		require.Contains(t, res.JSON400.Message, "errorRate")
	})
	t.Run("unknown task", func(t *testing.T) {
		res, err := admin.GetTaskWithResponse(ctx, "task-unknown")
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, res.StatusCode())
		require.NotEmpty(t, res.JSON404.Message)
		abort, err := admin.AbortTaskWithResponse(ctx, "task-unknown")
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, abort.StatusCode())
	})
	t.Run("unknown delegate", func(t *testing.T) {
		res, err := admin.DeleteDelegateWithResponse(ctx, "delegate-unknown")
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, res.StatusCode())
	})
	t.Run("abort of an answered task", func(t *testing.T) {
		r := newAuthedRunner(t, mm)
		r.register("runner", []string{"ONCE"}, nil)
		id := enqueue(t, mm, mockmanager.NewTask{Type: "ONCE"})
		require.Equal(t, http.StatusOK, r.acquire(id).StatusCode())
		_, err := r.c.SendTaskStatusWithResponse(ctx, id, r.id, &managerapi.SendTaskStatusParams{AccountId: r.account},
			managerapi.TaskResponse{Id: id, Type: "ONCE", Code: managerapi.TaskResponseCodeOK, Data: json.RawMessage(`{}`)})
		require.NoError(t, err)
		res, err := admin.AbortTaskWithResponse(ctx, id)
		require.NoError(t, err)
		require.Equal(t, http.StatusConflict, res.StatusCode(), string(res.Body))
		require.NotEmpty(t, res.JSON409.Message)
	})
}

func TestGoAPIRefusals(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	_, err := mm.Enqueue(mockmanager.NewTask{})
	require.ErrorIs(t, err, errs.ErrInvalidTaskData)
	_, err = mm.Enqueue(mockmanager.NewTask{Type: "SHELL", Data: new(json.RawMessage(`{`))})
	require.ErrorIs(t, err, errs.ErrInvalidTaskData)
	_, err = mm.Task("task-unknown")
	require.ErrorIs(t, err, errs.ErrNotFound)
	_, err = mm.Abort("task-unknown")
	require.ErrorIs(t, err, errs.ErrNotFound)
	require.ErrorIs(t, mm.DeleteDelegate("delegate-unknown"), errs.ErrNotFound)
	require.ErrorIs(t, mm.SetFaults(mockmanager.Faults{ResetRate: new(float32(-0.5))}), errs.ErrInvalidConfig)
	require.ErrorIs(t, mm.SetFaults(mockmanager.Faults{LatencyMs: new(60001)}), errs.ErrInvalidConfig)
	require.Empty(t, mm.Tasks())
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts mockmanager.Options
		want string
	}{
		{"no account", mockmanager.Options{AccountSecret: testSecret}, "AccountID"},
		{"short secret", mockmanager.Options{AccountID: "a", AccountSecret: "abcd"}, "32 hex characters"},
		{"secret not hex", mockmanager.Options{AccountID: "a", AccountSecret: strings.Repeat("z", 32)}, "32 hex characters"},
		{"no credentials", mockmanager.Options{AccountID: "a"}, "AccountSecret or Tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := mockmanager.New(tt.opts)
			require.ErrorIs(t, err, errs.ErrInvalidConfig)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}
