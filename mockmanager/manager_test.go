package mockmanager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestRegisterPollAcquireRespond(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	id := r.register("runner-a", []string{"SHELL"}, []string{"linux"})

	res, err := r.c.RegisterCapacityWithResponse(context.Background(), id,
		&managerapi.RegisterCapacityParams{AccountId: r.account}, managerapi.DelegateCapacity{MaximumNumberOfBuilds: 4})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode())

	hb := r.heartbeat(id)
	require.Equal(t, http.StatusOK, hb.StatusCode())
	require.Equal(t, managerapi.HeartbeatStatusENABLED, *hb.JSON200.Resource.Status)
	require.Equal(t, id, *hb.JSON200.Resource.DelegateId)

	ds := mm.Delegates()
	require.Len(t, ds, 1)
	require.Equal(t, "runner-a", ds[0].Name)
	require.Equal(t, "host-runner-a", *ds[0].HostName)
	require.Equal(t, []string{"SHELL"}, ds[0].SupportedTaskTypes)
	require.Equal(t, []string{"linux"}, ds[0].Tags)
	require.Equal(t, 4, *ds[0].Capacity)
	require.NotNil(t, ds[0].LastHeartbeat)

	require.Empty(t, r.poll())
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL", Data: new(json.RawMessage(`{"script":"echo hi"}`)), Timeout: new(int64(30))})

	events := r.poll()
	require.Len(t, events, 1)
	require.Equal(t, taskID, events[0].DelegateTaskId)
	require.Equal(t, "DelegateTaskEvent", *events[0].EventType)
	require.Equal(t, mm.AccountID(), *events[0].AccountId)
	require.Equal(t, "SHELL", *events[0].TaskType)
	require.False(t, *events[0].Sync)
	// Offered again until someone acquires it.
	require.Len(t, r.poll(), 1)

	acq := r.acquire(taskID)
	require.Equal(t, http.StatusOK, acq.StatusCode(), string(acq.Body))
	task := acq.JSON200
	require.Equal(t, taskID, task.Id)
	require.Equal(t, "SHELL", task.Type)
	require.JSONEq(t, `{"script":"echo hi"}`, string(*task.Data))
	require.True(t, *task.Async)
	require.False(t, *task.RunnerResponse)
	require.Equal(t, int64(30), *task.Timeout)
	require.NotEmpty(t, *task.Logging.Token)
	require.Equal(t, taskID, (*task.Logging.Abstractions)["taskId"])
	require.Equal(t, id, *task.Delegate.Id)
	require.Equal(t, id, *task.Delegate.InstanceId)
	require.NotEmpty(t, *task.Delegate.Token)
	require.JSONEq(t, `[]`, string(*task.Capabilities))
	require.Empty(t, r.poll(), "an acquired task is no longer offered")

	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State)
	require.Equal(t, id, *st.AcquiredBy)
	require.Equal(t, 1, st.Acquisitions)

	sr, err := r.c.SendTaskStatusWithResponse(context.Background(), taskID, id,
		&managerapi.SendTaskStatusParams{AccountId: r.account},
		managerapi.TaskResponse{Id: taskID, Type: "SHELL", Code: managerapi.TaskResponseCodeOK, Data: json.RawMessage(`{"exit_code":0}`)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, sr.StatusCode(), string(sr.Body))

	st, err = mm.WaitDone(waitCtx(t), taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateDone, st.State)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "OK", st.Responses[0].Code)
	require.JSONEq(t, `{"exit_code":0}`, string(*st.Responses[0].Data))
}

// The bodies below are what the reference delegate client sends, as recorded on the wire
// (shared/protocol/harness-delegate-wire.json): the mock must accept them as they are.
func TestAcceptsReferenceClientBodies(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	ctx := context.Background()

	reg, err := r.c.RegisterDelegateWithBodyWithResponse(ctx, &managerapi.RegisterDelegateParams{AccountId: r.account}, "application/json",
		strings.NewReader(`{"accountId":"`+r.account+`","delegateName":"runner-a","delegateRandomToken":"0123456789abcdef0123456789abcdef",`+
			`"lastHeartBeat":1700000000000,"delegateType":"DOCKER","ng":true,"pollingModeEnabled":true,"hostName":"dlite-host",`+
			`"sequenceNum":1,"ip":"10.0.0.5","supportedTaskTypes":["CI_DOCKER_EXECUTE_TASK"],"tags":["linux"],"heartbeatAsObject":true}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, reg.StatusCode(), string(reg.Body))
	r.id = *reg.JSON200.Resource.DelegateId

	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "CI_DOCKER_EXECUTE_TASK", RunnerResponse: new(true)})
	require.Equal(t, http.StatusOK, r.acquire(taskID).StatusCode())
	res, err := r.c.SendRunnerTaskStatusWithBodyWithResponse(ctx, taskID,
		&managerapi.SendRunnerTaskStatusParams{AccountId: r.account, DelegateId: r.id}, "application/json",
		strings.NewReader(`{"id":"`+taskID+`","type":"CI_DOCKER_EXECUTE_TASK","code":"FAILED","error":"exit status 1","data":"eyJleGl0X2NvZGUiOjF9"}`))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))

	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "exit status 1", *st.Responses[0].Error)
	require.JSONEq(t, `{"exit_code":1}`, string(*st.Responses[0].Data))
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	id := r.register("runner-a", []string{"SHELL"}, nil)
	ctx := context.Background()
	params := &managerapi.RegisterDelegateParams{AccountId: r.account}

	tests := []struct {
		name  string
		call  func() (int, []byte, *managerapi.Error)
		field string
	}{
		{"register with a string for a list", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.RegisterDelegateWithBodyWithResponse(ctx, params, "application/json", strings.NewReader(`{"supportedTaskTypes":"x"}`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "supportedTaskTypes"},
		{"register with a number in the tags", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.RegisterDelegateWithBodyWithResponse(ctx, params, "application/json", strings.NewReader(`{"tags":["a",1]}`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "tags/1"},
		{"register with broken JSON", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.RegisterDelegateWithBodyWithResponse(ctx, params, "application/json", strings.NewReader(`{"tags":`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "request body"},
		{"register without accountId", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.RegisterDelegateWithResponse(ctx, &managerapi.RegisterDelegateParams{}, managerapi.DelegateParams{})
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "accountId"},
		{"capacity without its count", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.RegisterCapacityWithBodyWithResponse(ctx, id, &managerapi.RegisterCapacityParams{AccountId: r.account},
				"application/json", strings.NewReader(`{}`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "maximumNumberOfBuilds"},
		{"legacy status with a string for data", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.SendTaskStatusWithBodyWithResponse(ctx, "t-1", id, &managerapi.SendTaskStatusParams{AccountId: r.account},
				"application/json", strings.NewReader(`{"id":"t-1","type":"SHELL","code":"OK","data":"done"}`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "data"},
		{"runner status with an unknown code", func() (int, []byte, *managerapi.Error) {
			res, err := r.c.SendRunnerTaskStatusWithBodyWithResponse(ctx, "t-1", &managerapi.SendRunnerTaskStatusParams{AccountId: r.account, DelegateId: id},
				"application/json", strings.NewReader(`{"id":"t-1","type":"SHELL","code":"MAYBE","error":"","data":""}`))
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "code"},
		{"acquire without delegateInstanceId", func() (int, []byte, *managerapi.Error) {
			dropInstance := func(_ context.Context, req *http.Request) error {
				q := req.URL.Query()
				q.Del("delegateInstanceId")
				req.URL.RawQuery = q.Encode()
				return nil
			}
			res, err := r.c.AcquireTaskWithResponse(ctx, id, "t-1", &managerapi.AcquireTaskParams{AccountId: r.account}, dropInstance)
			require.NoError(t, err)
			return res.StatusCode(), res.Body, res.JSON400
		}, "delegateInstanceId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, e := tt.call()
			require.Equal(t, http.StatusBadRequest, status, string(body))
			require.NotNil(t, e, string(body))
			require.Contains(t, e.Message, tt.field)
		})
	}
	require.Len(t, mm.Delegates(), 1, "refused registrations leave no delegate behind")
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{AccountID: "acct-1", AccountSecret: testSecret, Tokens: []string{"fixed-token"}})
	now := time.Now()
	tests := []struct {
		name, authorization, account, reason string
	}{
		{"missing header", "", "acct-1", "missing Authorization"},
		{"garbage", "Delegate not-a-token", "acct-1", "neither a configured token nor a compact JWE"},
		{"other scheme", "Bearer fixed-token", "acct-1", "Delegate <token>"},
		{"wrong secret", "Delegate " + mintToken(t, "ffffffffffffffffffffffffffffffff", "acct-1", now), "acct-1", "does not decrypt"},
		{"expired", "Delegate " + mintToken(t, testSecret, "acct-1", now.Add(-time.Hour)), "acct-1", "expired"},
		{"other subject", "Delegate " + mintToken(t, testSecret, "acct-2", now), "acct-1", "subject"},
		{"other account in the query", "Delegate " + mintToken(t, testSecret, "acct-1", now), "acct-2", "accountId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t, mm, tt.authorization)
			r.account = tt.account
			res, err := r.c.RegisterDelegateWithResponse(context.Background(),
				&managerapi.RegisterDelegateParams{AccountId: tt.account}, managerapi.DelegateParams{})
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, res.StatusCode(), string(res.Body))
			require.NotNil(t, res.JSON401)
			require.Contains(t, res.JSON401.Message, tt.reason)
		})
	}
	t.Run("accepted", func(t *testing.T) {
		t.Parallel()
		for _, auth := range []string{"Delegate fixed-token", "Delegate " + mintToken(t, testSecret, "acct-1", now)} {
			r := newRunner(t, mm, auth)
			r.register("runner", nil, nil)
		}
	})
}

func TestOffersMatchTypesAndTags(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	linux := newAuthedRunner(t, mm)
	linux.register("linux", []string{"SHELL", "HTTP"}, []string{"linux", "amd64"})
	windows := newAuthedRunner(t, mm)
	windows.register("windows", []string{"SHELL"}, []string{"windows"})

	shell := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	httpTask := enqueue(t, mm, mockmanager.NewTask{Type: "HTTP"})
	linuxShell := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL", Tags: &[]string{"linux", "amd64"}})
	armShell := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL", Tags: &[]string{"linux", "arm64"}})
	enqueue(t, mm, mockmanager.NewTask{Type: "DOCKER"})

	tasks, aborts := eventIDs(linux.poll())
	require.Equal(t, []string{shell, httpTask, linuxShell}, tasks, "oldest first")
	require.Empty(t, aborts)
	tasks, _ = eventIDs(windows.poll())
	require.Equal(t, []string{shell}, tasks)
	require.NotContains(t, tasks, armShell)
}

func TestMaxEventsPerPoll(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{MaxEventsPerPoll: 2})
	r := newAuthedRunner(t, mm)
	r.register("runner", []string{"SHELL"}, nil)
	first := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	second := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	third := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})

	tasks, _ := eventIDs(r.poll())
	require.Equal(t, []string{first, second}, tasks)
	require.Equal(t, http.StatusOK, r.acquire(first).StatusCode())
	tasks, _ = eventIDs(r.poll())
	require.Equal(t, []string{second, third}, tasks)
}

func TestAcquireIsExclusive(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	a := newAuthedRunner(t, mm)
	a.register("a", []string{"SHELL"}, nil)
	b := newAuthedRunner(t, mm)
	b.register("b", []string{"SHELL"}, nil)
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})

	require.Equal(t, http.StatusOK, a.acquire(taskID).StatusCode())
	second := b.acquire(taskID)
	require.Equal(t, http.StatusConflict, second.StatusCode())
	require.NotNil(t, second.JSON409)
	require.Contains(t, second.JSON409.Message, "acquired")
	again := a.acquire(taskID)
	require.Equal(t, http.StatusOK, again.StatusCode(), "the holder gets its task again, so a lost answer can be retried")
	require.Equal(t, taskID, again.JSON200.Id)

	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, a.id, *st.AcquiredBy)
	require.Equal(t, 1, st.Acquisitions)
	require.Equal(t, 1, st.Conflicts)
	require.Len(t, st.AcquireAttempts, 3)
	require.Equal(t, []bool{true, false, true},
		[]bool{st.AcquireAttempts[0].Granted, st.AcquireAttempts[1].Granted, st.AcquireAttempts[2].Granted})
	require.Equal(t, []string{a.id, b.id, a.id},
		[]string{st.AcquireAttempts[0].DelegateId, st.AcquireAttempts[1].DelegateId, st.AcquireAttempts[2].DelegateId})

	unknown := a.acquire("task-unknown")
	require.Equal(t, http.StatusNotFound, unknown.StatusCode())
	require.NotNil(t, unknown.JSON404)
}

func TestAcquireRaceHasOneWinner(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	const n = 8
	runners := make([]*runner, n)
	for i := range runners {
		runners[i] = newAuthedRunner(t, mm)
		// Distinct names: runners alike in name and host are one delegate to the manager.
		runners[i].register(fmt.Sprintf("r%d", i), []string{"SHELL"}, nil)
	}
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	codes := make(chan int, n)
	for _, r := range runners {
		go func() {
			res, err := r.c.AcquireTaskWithResponse(context.Background(), r.id, taskID,
				&managerapi.AcquireTaskParams{AccountId: r.account, DelegateInstanceId: r.id})
			if err != nil {
				codes <- 0
				return
			}
			codes <- res.StatusCode()
		}()
	}
	count := map[int]int{}
	for range n {
		count[<-codes]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusConflict: n - 1}, count)
	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, 1, st.Acquisitions)
	require.Equal(t, n-1, st.Conflicts)
}

func TestAbort(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	holder := newAuthedRunner(t, mm)
	holder.register("holder", []string{"SHELL"}, nil)
	other := newAuthedRunner(t, mm)
	other.register("other", []string{"SHELL"}, nil)

	running := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	require.Equal(t, http.StatusOK, holder.acquire(running).StatusCode())
	queued := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})

	st, err := mm.Abort(queued)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAborted, st.State)
	st, err = mm.Abort(running)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAborted, st.State)

	tasks, aborts := eventIDs(holder.poll())
	require.Empty(t, tasks, "an aborted task is not offered")
	require.Equal(t, []string{running}, aborts)
	tasks, aborts = eventIDs(holder.poll())
	require.Empty(t, tasks)
	require.Empty(t, aborts, "an abort event is delivered once")
	tasks, aborts = eventIDs(other.poll())
	require.Empty(t, tasks)
	require.Empty(t, aborts, "only the holder hears of the abort")
	require.Equal(t, http.StatusConflict, other.acquire(queued).StatusCode())

	// The holder answers after stopping: recorded, and the task stays aborted.
	res, err := holder.c.SendTaskStatusWithResponse(context.Background(), running, holder.id,
		&managerapi.SendTaskStatusParams{AccountId: holder.account},
		managerapi.TaskResponse{Id: running, Type: "SHELL", Code: managerapi.TaskResponseCodeFAILED, Data: json.RawMessage(`{"errorMessage":"aborted"}`)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode())
	st, err = mm.Task(running)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAborted, st.State)
	require.Len(t, st.Responses, 1)
	require.Equal(t, "aborted", *st.Responses[0].Error)

	done := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	require.Equal(t, http.StatusOK, other.acquire(done).StatusCode())
	_, err = other.c.SendTaskStatusWithResponse(context.Background(), done, other.id,
		&managerapi.SendTaskStatusParams{AccountId: other.account},
		managerapi.TaskResponse{Id: done, Type: "SHELL", Code: managerapi.TaskResponseCodeOK, Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	_, err = mm.Abort(done)
	require.ErrorIs(t, err, mockmanager.ErrTaskFinished)
}

func TestHeartbeatStatus(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	id := r.register("runner", []string{"SHELL"}, nil)

	hb := r.heartbeat(id)
	require.Equal(t, http.StatusOK, hb.StatusCode())
	require.Equal(t, managerapi.HeartbeatStatusENABLED, *hb.JSON200.Resource.Status)

	require.NoError(t, mm.DeleteDelegate(id))
	hb = r.heartbeat(id)
	require.Equal(t, http.StatusOK, hb.StatusCode())
	require.Equal(t, managerapi.HeartbeatStatusDELETED, *hb.JSON200.Resource.Status)

	enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	ev, err := r.c.GetTaskEventsWithResponse(context.Background(), id, &managerapi.GetTaskEventsParams{AccountId: r.account})
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, ev.StatusCode(), "a deleted delegate gets no events")
	require.Contains(t, ev.JSON404.Message, "deleted")

	hb = r.heartbeat("delegate-unknown")
	require.Equal(t, http.StatusOK, hb.StatusCode())
	require.Nil(t, hb.JSON200.Resource)
	require.Contains(t, string(hb.Body), `"resource":null`)
}

func TestResponsesRecordedFromEveryEndpoint(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	id := r.register("runner", []string{"SHELL"}, nil)
	ctx := context.Background()
	legacy := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	runnerTask := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL", RunnerResponse: new(true)})
	v2 := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL", RunnerResponse: new(true)})
	for _, taskID := range []string{legacy, runnerTask, v2} {
		require.Equal(t, http.StatusOK, r.acquire(taskID).StatusCode())
	}

	lr, err := r.c.SendTaskStatusWithResponse(ctx, legacy, id, &managerapi.SendTaskStatusParams{AccountId: r.account},
		managerapi.TaskResponse{Id: legacy, Type: "SHELL", Code: managerapi.TaskResponseCodeFAILED,
			Data: json.RawMessage(`{"errorMessage":"exit status 2","exit_code":2}`)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, lr.StatusCode(), string(lr.Body))
	rr, err := r.c.SendRunnerTaskStatusWithResponse(ctx, runnerTask, &managerapi.SendRunnerTaskStatusParams{AccountId: r.account, DelegateId: id},
		managerapi.RunnerTaskResponse{Id: runnerTask, Type: "SHELL", Code: managerapi.RunnerTaskResponseCodeOK, Data: []byte(`{"exit_code":0}`)})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, rr.StatusCode(), string(rr.Body))
	vr, err := r.c.SendTaskStatusV2WithResponse(ctx, v2, &managerapi.SendTaskStatusV2Params{AccountId: r.account, RunnerId: "runner-7"},
		managerapi.RunnerTaskResponse{Id: v2, Type: "SHELL", Code: managerapi.RunnerTaskResponseCodeTIMEOUT, Error: "deadline", Data: []byte("plain text")})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, vr.StatusCode(), string(vr.Body))

	st, err := mm.Task(legacy)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateDone, st.State)
	require.Equal(t, "legacy", string(st.Responses[0].Endpoint))
	require.Equal(t, id, *st.Responses[0].DelegateId)
	require.Equal(t, "FAILED", st.Responses[0].Code)
	require.Equal(t, "exit status 2", *st.Responses[0].Error)
	require.JSONEq(t, `{"errorMessage":"exit status 2","exit_code":2}`, string(*st.Responses[0].Data))

	st, err = mm.Task(runnerTask)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateDone, st.State)
	require.Equal(t, "runner", string(st.Responses[0].Endpoint))
	require.Equal(t, id, *st.Responses[0].DelegateId)
	require.JSONEq(t, `{"exit_code":0}`, string(*st.Responses[0].Data), "base64 decoded, kept as JSON")

	st, err = mm.Task(v2)
	require.NoError(t, err)
	require.Equal(t, "v2", string(st.Responses[0].Endpoint))
	require.Equal(t, "runner-7", *st.Responses[0].DelegateId)
	require.Equal(t, "TIMEOUT", st.Responses[0].Code)
	require.Equal(t, "deadline", *st.Responses[0].Error)
	require.JSONEq(t, `"plain text"`, string(*st.Responses[0].Data), "non-JSON data is kept as a string")

	// A second answer is recorded too; the first one decided the state.
	vr, err = r.c.SendTaskStatusV2WithResponse(ctx, v2, &managerapi.SendTaskStatusV2Params{AccountId: r.account, RunnerId: "runner-7"},
		managerapi.RunnerTaskResponse{Id: v2, Type: "SHELL", Code: managerapi.RunnerTaskResponseCodeOK, Data: []byte{}})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, vr.StatusCode(), string(vr.Body))
	st, err = mm.Task(v2)
	require.NoError(t, err)
	require.Len(t, st.Responses, 2)
	require.Equal(t, mockmanager.StateDone, st.State)

	nf, err := r.c.SendRunnerTaskStatusWithResponse(ctx, "task-unknown", &managerapi.SendRunnerTaskStatusParams{AccountId: r.account, DelegateId: id},
		managerapi.RunnerTaskResponse{Id: "task-unknown", Type: "SHELL", Code: managerapi.RunnerTaskResponseCodeOK, Data: []byte{}})
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, nf.StatusCode())
}

func TestLostDelegateTasksAreRequeued(t *testing.T) {
	t.Parallel()
	clk := newClock()
	mm := mockmanager.NewTest(t, mockmanager.Options{DelegateTimeout: time.Minute, Now: clk.Now})
	lost := newAuthedRunner(t, mm)
	lost.register("lost", []string{"SHELL"}, nil)
	alive := newAuthedRunner(t, mm)
	alive.register("alive", []string{"SHELL"}, nil)
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	require.Equal(t, http.StatusOK, lost.acquire(taskID).StatusCode())

	clk.Advance(50 * time.Second)
	require.Equal(t, http.StatusOK, alive.heartbeat(alive.id).StatusCode())
	st, err := mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State, "not lost yet")

	clk.Advance(20 * time.Second)
	st, err = mm.WaitTask(waitCtx(t), taskID, func(st mockmanager.TaskStatus) bool { return st.State == mockmanager.StateQueued })
	require.NoError(t, err)
	require.Nil(t, st.AcquiredBy)
	tasks, _ := eventIDs(alive.poll())
	require.Equal(t, []string{taskID}, tasks)
	require.Empty(t, lost.poll(), "a lost delegate is offered nothing")

	require.Equal(t, http.StatusOK, alive.acquire(taskID).StatusCode())
	st, err = mm.Task(taskID)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State)
	require.Equal(t, alive.id, *st.AcquiredBy)
	require.Equal(t, 2, st.Acquisitions)
}

func TestWaitDoneFollowsARunner(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	r.register("runner", []string{"SHELL"}, nil)
	taskID := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})

	errc := make(chan error, 1)
	go func() {
		// A runner in miniature: poll until offered, acquire, answer.
		for {
			res, err := r.c.GetTaskEventsWithResponse(context.Background(), r.id, &managerapi.GetTaskEventsParams{AccountId: r.account})
			if err != nil {
				errc <- err
				return
			}
			if len(*res.JSON200.DelegateTaskEvents) > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := r.c.AcquireTaskWithResponse(context.Background(), r.id, taskID,
			&managerapi.AcquireTaskParams{AccountId: r.account, DelegateInstanceId: r.id}); err != nil {
			errc <- err
			return
		}
		_, err := r.c.SendRunnerTaskStatusWithResponse(context.Background(), taskID,
			&managerapi.SendRunnerTaskStatusParams{AccountId: r.account, DelegateId: r.id},
			managerapi.RunnerTaskResponse{Id: taskID, Type: "SHELL", Code: managerapi.RunnerTaskResponseCodeOK, Data: []byte(`{"ok":true}`)})
		errc <- err
	}()
	st, err := mm.WaitDone(waitCtx(t), taskID)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.Equal(t, mockmanager.StateDone, st.State)
	require.JSONEq(t, `{"ok":true}`, string(*st.Responses[0].Data))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pending := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	st, err = mm.WaitDone(ctx, pending)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, mockmanager.StateQueued, st.State)
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(mm.URL + "/api/nothing-here")
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.Contains(t, string(body), `"message"`)
}
