package harness_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/manager"
)

func okResult(data json.RawMessage) manager.Result {
	return manager.Result{
		TaskID: "task-9", TaskType: "SHELL_SCRIPT_TASK", DelegateID: "del-123",
		Endpoint: manager.EndpointLegacy, Code: manager.CodeOK, Data: data,
	}
}

func TestLegacyDataIsAlwaysAnObject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		code   manager.Code
		errMsg string
		data   string
		want   string
		code2  string
	}{
		{"object", manager.CodeOK, "", `{"exit_code":0,"out":"hi"}`, `{"exit_code":0,"out":"hi"}`, "OK"},
		{"nil", manager.CodeOK, "", ``, `{}`, "OK"},
		{"null", manager.CodeOK, "", `null`, `{}`, "OK"},
		{"array", manager.CodeOK, "", `[1,2]`, `{"output":[1,2]}`, "OK"},
		{"string", manager.CodeOK, "", `"done"`, `{"output":"done"}`, "OK"},
		{"number", manager.CodeOK, "", `42`, `{"output":42}`, "OK"},
		{"invalid JSON", manager.CodeOK, "", `exit 0`, `{"output":"exit 0"}`, "OK"},
		{"failed object", manager.CodeFailed, "exit status 1", `{"exit_code":1}`, `{"exit_code":1,"errorMessage":"exit status 1"}`, "FAILED"},
		{"failed overwrites errorMessage", manager.CodeFailed, "exit status 2", `{"errorMessage":"old"}`, `{"errorMessage":"exit status 2"}`, "FAILED"},
		{"failed nil", manager.CodeFailed, "boom", ``, `{"errorMessage":"boom"}`, "FAILED"},
		{"failed array", manager.CodeFailed, "boom", `[1]`, `{"output":[1],"errorMessage":"boom"}`, "FAILED"},
		{"failed invalid JSON", manager.CodeFailed, "boom", `oops`, `{"output":"oops","errorMessage":"boom"}`, "FAILED"},
		{"timeout is FAILED", manager.CodeTimeout, "", `{}`, `{"errorMessage":"task timed out"}`, "FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			endpoint, rec := newServer(t, reply(http.StatusOK, ""))
			c := newClient(t, endpoint, nil)
			r := okResult(nil)
			r.Code, r.Error = tc.code, tc.errMsg
			if tc.data != "" {
				r.Data = json.RawMessage(tc.data)
			}
			require.NoError(t, c.Report(t.Context(), r))

			req := rec.only(t)
			require.Equal(t, prefix+"/api/agent/v2/tasks/task-9/delegates/del-123", req.Path)
			var body struct {
				ID   string          `json:"id"`
				Type string          `json:"type"`
				Code string          `json:"code"`
				Data json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(req.Body, &body))
			require.Equal(t, "task-9", body.ID)
			require.Equal(t, "SHELL_SCRIPT_TASK", body.Type)
			require.Equal(t, tc.code2, body.Code)
			require.JSONEq(t, tc.want, string(body.Data))
		})
	}
}

func TestRunnerResponse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		code            manager.Code
		errMsg, data    string
		wantCode        string
		wantErr, wantTo string
	}{
		{"ok without output", manager.CodeOK, "", "", "OK", "", `{}`},
		{"ok drops stray error text", manager.CodeOK, "ignored", `{"a":1}`, "OK", "", `{"a":1}`},
		{"failed", manager.CodeFailed, "exit status 1", `{"exit_code":1}`, "FAILED", "exit status 1", `{"exit_code":1}`},
		{"failed without reason", manager.CodeFailed, "", "", "FAILED", "task failed", `{}`},
		{"timeout", manager.CodeTimeout, "deadline of 10m passed", "", "TIMEOUT", "deadline of 10m passed", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			endpoint, rec := newServer(t, reply(http.StatusNoContent, ""))
			c := newClient(t, endpoint, nil)
			r := okResult(json.RawMessage(tc.data))
			r.Endpoint, r.Code, r.Error = manager.EndpointRunner, tc.code, tc.errMsg
			require.NoError(t, c.Report(t.Context(), r))

			req := rec.only(t)
			require.Equal(t, prefix+"/api/executions/task-9/response", req.Path)
			require.Equal(t, "del-123", req.Query.Get("delegateId"))
			body := rec.body(t)
			require.Equal(t, tc.wantCode, body["code"])
			require.Equal(t, tc.wantErr, body["error"])
			data, err := base64.StdEncoding.DecodeString(body["data"].(string))
			require.NoError(t, err)
			require.JSONEq(t, tc.wantTo, string(data))
		})
	}
}

func TestReportV2NamesTheRunner(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, ""))
	c := newClient(t, endpoint, nil)
	require.NoError(t, c.ReportV2(t.Context(), "runner-7", okResult(json.RawMessage(`{"exit_code":0}`))))
	req := rec.only(t)
	require.Equal(t, prefix+"/api/executions/task-9/task-response", req.Path)
	require.Equal(t, "runner-7", req.Query.Get("runnerId"))
	require.Equal(t, "OK", rec.body(t)["code"])

	require.ErrorIs(t, c.ReportV2(t.Context(), "", okResult(nil)), errs.ErrInvalidConfig)
}

func TestReportRefusesWhatCannotBeAddressed(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, ""))
	c := newClient(t, endpoint, nil)
	unknown := okResult(nil)
	unknown.Endpoint = "carrier-pigeon"
	noTask := okResult(nil)
	noTask.TaskID = ""
	noDelegate := okResult(nil)
	noDelegate.DelegateID = ""
	for _, r := range []manager.Result{unknown, noTask, noDelegate} {
		err := c.Report(t.Context(), r)
		require.ErrorIs(t, err, errs.ErrInvalidConfig)
		require.False(t, errs.Retryable(err))
	}
	require.Empty(t, rec.all(), "nothing may be sent for a result without an address")
}

// The Harness manager has no endpoint for a task's updates: one is refused for good, on either
// endpoint, without a request.
func TestReportRefusesUpdatesWithoutARequest(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, ""))
	c := newClient(t, endpoint, nil)
	for _, ep := range []manager.Endpoint{manager.EndpointLegacy, manager.EndpointRunner} {
		update := okResult(json.RawMessage(`{"step":1}`))
		update.Endpoint, update.Code, update.Update = ep, "", 1
		err := c.Report(t.Context(), update)
		require.ErrorIs(t, err, errs.ErrManagerRejected)
		require.False(t, errs.Retryable(err))
		require.Contains(t, err.Error(), "the Harness manager takes no task updates")
	}
	require.Empty(t, rec.all(), "an update is refused without a call")
	require.NoError(t, c.Report(t.Context(), okResult(nil)), "an outcome still goes")
	require.Len(t, rec.all(), 1)
}

func TestRegister(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("tolerates unknown fields and passes the action on", func(t *testing.T) {
		t.Parallel()
		endpoint, rec := newServer(t, reply(http.StatusOK,
			`{"metaData":{"x":1},"resource":{"delegateId":"del-9","action":"SELF_DESTRUCT","sequenceNum":"7","brandNew":{"a":[1]}},"responseMessages":[],"extra":true}`))
		c := newClient(t, endpoint, nil)
		reg, err := c.Register(t.Context(), manager.Delegate{Name: "runner-a", Token: "tok", At: at})
		require.NoError(t, err)
		require.Equal(t, manager.Registration{DelegateID: "del-9", Action: "SELF_DESTRUCT"}, reg)

		body := rec.body(t)
		require.InDelta(t, float64(at.UnixMilli()), body["lastHeartBeat"], 0, "Delegate.At is the heartbeat time")
		for _, absent := range []string{"hostName", "ip", "tags", "supportedTaskTypes", "delegateId", "currentlyExecutingDelegateTasks"} {
			require.NotContains(t, body, absent)
		}
		require.NotContains(t, string(rec.only(t).Body), testSecret)
	})

	t.Run("without delegateId", func(t *testing.T) {
		t.Parallel()
		for _, answer := range []string{`{"resource":{}}`, `{"resource":null}`, `{}`, ``} {
			endpoint, _ := newServer(t, reply(http.StatusOK, answer))
			c := newClient(t, endpoint, nil)
			_, err := c.Register(t.Context(), manager.Delegate{Name: "runner-a"})
			require.ErrorIs(t, err, errs.ErrMalformedResponse, "answer %q", answer)
		}
	})

	t.Run("capacity failure fails the registration", func(t *testing.T) {
		t.Parallel()
		endpoint, rec := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "register-delegate-capacity") {
				reply(http.StatusBadGateway, "")(w, r)
				return
			}
			reply(http.StatusOK, `{"resource":{"delegateId":"del-123"}}`)(w, r)
		})
		c := newClient(t, endpoint, nil)
		_, err := c.Register(t.Context(), manager.Delegate{Name: "runner-a", Capacity: 8})
		require.ErrorIs(t, err, errs.ErrManagerUnavailable)
		var e *errs.Error
		require.True(t, errors.As(err, &e))
		require.Equal(t, "record capacity of delegate del-123", e.Op)
		require.Len(t, rec.all(), 2)
	})

	t.Run("no capacity call without a capacity", func(t *testing.T) {
		t.Parallel()
		endpoint, rec := newServer(t, reply(http.StatusOK, `{"resource":{"delegateId":"del-123"}}`))
		c := newClient(t, endpoint, nil)
		_, err := c.Register(t.Context(), manager.Delegate{Name: "runner-a"})
		require.NoError(t, err)
		require.Len(t, rec.all(), 1)
	})
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		answer string
		want   manager.Heartbeat
	}{
		{`{"resource":null}`, manager.Heartbeat{Status: manager.StatusUnknown}},
		{`{"metaData":{},"responseMessages":[]}`, manager.Heartbeat{Status: manager.StatusUnknown}},
		{`{"resource":{"delegateId":"del-123","status":"DELETED","useCdn":true,"jreVersion":"17","sequenceNumber":3,"future":"x"}}`,
			manager.Heartbeat{Status: manager.StatusDeleted, DelegateID: "del-123"}},
		{`{"resource":{"delegateId":"del-123","status":"WAITING_FOR_APPROVAL"}}`,
			manager.Heartbeat{Status: manager.StatusWaitingForApproval, DelegateID: "del-123"}},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			t.Parallel()
			endpoint, rec := newServer(t, reply(http.StatusOK, tc.answer))
			c := newClient(t, endpoint, nil)
			hb, err := c.Heartbeat(t.Context(), "del-123", manager.Delegate{Name: "runner-a", Running: []string{"t-1", "t-2"}})
			require.NoError(t, err)
			require.Equal(t, tc.want, hb)
			body := rec.body(t)
			require.Equal(t, "del-123", body["delegateId"])
			require.Equal(t, []any{"t-1", "t-2"}, body["currentlyExecutingDelegateTasks"])
		})
	}

	t.Run("empty answer", func(t *testing.T) {
		t.Parallel()
		endpoint, _ := newServer(t, reply(http.StatusOK, ""))
		c := newClient(t, endpoint, nil)
		_, err := c.Heartbeat(t.Context(), "del-123", manager.Delegate{})
		require.ErrorIs(t, err, errs.ErrMalformedResponse)
	})
}

func TestPollSkipsEventsItCannotUse(t *testing.T) {
	t.Parallel()
	endpoint, _ := newServer(t, reply(http.StatusOK, `{"delegateTaskEvents":[
		{"accountId":"acct-1","delegateTaskId":"t-1","sync":true,"taskType":"SHELL_SCRIPT_TASK"},
		{"delegateTaskId":"t-2","taskType":"HTTP_TASK","eventType":"DelegateTaskEvent","unknownField":1},
		{"delegateTaskId":"t-3","eventType":"DelegateTaskAbortEvent"},
		{"delegateTaskId":"t-4","eventType":"DelegateTaskRescheduleEvent"},
		{"taskType":"SHELL_SCRIPT_TASK"},
		{"delegateTaskId":5},
		42,
		null
	],"future":{}}`))
	logger, logs := newLogger()
	c := newClient(t, endpoint, func(o *harness.Options) { o.Logger = logger })

	events, err := c.Poll(t.Context(), "del-123")
	require.NoError(t, err)
	require.Equal(t, []manager.Event{
		{TaskID: "t-1", TaskType: "SHELL_SCRIPT_TASK", Sync: true},
		{TaskID: "t-2", TaskType: "HTTP_TASK"},
		{TaskID: "t-3", Abort: true},
	}, events)
	require.Equal(t, 5, strings.Count(logs.String(), "level=WARN"), logs.String())
	require.Contains(t, logs.String(), "DelegateTaskRescheduleEvent")
}

func TestPollWithoutEvents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		body   string
	}{{200, `{"delegateTaskEvents":[]}`}, {200, `{"delegateTaskEvents":null}`}, {200, `{}`}, {200, ``}, {204, ``}} {
		endpoint, _ := newServer(t, reply(tc.status, tc.body))
		c := newClient(t, endpoint, nil)
		events, err := c.Poll(t.Context(), "del-123")
		require.NoError(t, err, "%d %q", tc.status, tc.body)
		require.Empty(t, events)
	}
}

func TestPollRejectsWhatIsNotAnEventList(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`not json`, `{"delegateTaskEvents":{"a":1}}`, `[1,2]`, `"events"`, `{"delegateTaskEvents":"t-1"}`,
		`{"delegateTaskEvents":[{"delegateTaskId":"t-1"}]} trailing`, `{"delegateTaskEvents":[{"delegateTaskId":"t-1"}`,
		`{"delegateTaskEvents":[{"delegateTaskId":"t-1","sync":tru}]}`, "{\"delegateTaskEvents\":[{\"delegateTaskId\":\"t\x01\"}]}"} {
		endpoint, _ := newServer(t, reply(http.StatusOK, body))
		c := newClient(t, endpoint, nil)
		_, err := c.Poll(t.Context(), "del-123")
		require.ErrorIs(t, err, errs.ErrMalformedResponse, body)
	}
}

func TestAcquireConflict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"204", http.StatusNoContent, ""},
		{"empty 200", http.StatusOK, ""},
		{"null 200", http.StatusOK, "null"},
		{"409", http.StatusConflict, `{"message":"taken"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			endpoint, rec := newServer(t, reply(tc.status, tc.body))
			c := newClient(t, endpoint, nil)
			task, err := c.Acquire(t.Context(), "del-123", "task-9")
			require.Nil(t, task)
			require.ErrorIs(t, err, errs.ErrAcquireConflict)
			require.False(t, errs.Retryable(err))
			req := rec.only(t)
			require.Equal(t, http.MethodPut, req.Method)
			require.Equal(t, "del-123", req.Query.Get("delegateInstanceId"))
		})
	}
}

func TestAcquireDecodesTheTask(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("minimal task with unknown fields", func(t *testing.T) {
		t.Parallel()
		const answer = `{"id":"task-9","type":"HTTP_TASK","unknown":{"nested":[1]},"logging":{"token":"lt","x":1}}`
		endpoint, _ := newServer(t, reply(http.StatusOK, answer))
		c := newClient(t, endpoint, func(o *harness.Options) { o.Now = newClock(at).Now })
		task, err := c.Acquire(t.Context(), "del-123", "task-9")
		require.NoError(t, err)
		require.Equal(t, "task-9", task.ID)
		require.Equal(t, "HTTP_TASK", task.Type)
		require.Zero(t, task.Timeout)
		require.Nil(t, task.Data)
		require.Nil(t, task.Capabilities)
		require.Equal(t, "lt", task.Logging.Token)
		require.Equal(t, at, task.AcquiredAt)
		require.JSONEq(t, answer, string(task.Raw))
	})

	t.Run("null data is no data", func(t *testing.T) {
		t.Parallel()
		endpoint, _ := newServer(t, reply(http.StatusOK, `{"id":"task-9","type":"HTTP_TASK","data":null,"timeout":-5}`))
		c := newClient(t, endpoint, nil)
		task, err := c.Acquire(t.Context(), "del-123", "task-9")
		require.NoError(t, err)
		require.Nil(t, task.Data)
		require.Zero(t, task.Timeout)
	})

	t.Run("task without a type", func(t *testing.T) {
		t.Parallel()
		endpoint, _ := newServer(t, reply(http.StatusOK, `{"id":"task-9"}`))
		c := newClient(t, endpoint, nil)
		_, err := c.Acquire(t.Context(), "del-123", "task-9")
		require.ErrorIs(t, err, errs.ErrMalformedResponse)
	})
}
