package mockmanager_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

// FuzzManagerRequestBodies posts arbitrary bodies, JSON or not, to every manager operation that
// takes one, as an authenticated delegate naming a real delegate and task: the mock answers each
// with a success or a 4xx refusal, never a 500 (a bug of the mock), and keeps serving.
func FuzzManagerRequestBodies(f *testing.F) {
	f.Add(uint8(0), []byte(`{"delegateName":"r","hostName":"h","supportedTaskTypes":["SLEEP_TASK"],"tags":["a"],"ng":true}`))
	f.Add(uint8(1), []byte(`{"delegateId":"%DELEGATE%","lastHeartBeat":1,"currentlyExecutingDelegateTasks":["t"]}`))
	f.Add(uint8(2), []byte(`{"maximumNumberOfBuilds":4}`))
	f.Add(uint8(3), []byte(`{"id":"t","type":"SLEEP_TASK","code":"OK","data":{"a":1}}`))
	f.Add(uint8(3), []byte(`{"id":"t","type":"SLEEP_TASK","code":"FAILED","data":"not an object"}`))
	f.Add(uint8(4), []byte(`{"id":"t","type":"SLEEP_TASK","code":"OK","error":"","data":"e30="}`))
	f.Add(uint8(5), []byte(`{"id":"t","type":"SLEEP_TASK","code":"TIMEOUT","data":"!!"}`))
	for op := range uint8(6) {
		for _, body := range []string{``, `null`, `[]`, `{}`, `{"a":`, `"x"`, `{"id":7,"code":null}`} {
			f.Add(op, []byte(body))
		}
	}
	mm := mockmanager.NewTest(f, mockmanager.Options{AccountSecret: testSecret, Logger: slog.New(slog.DiscardHandler)})
	r := newAuthedRunner(f, mm)
	delegate := r.register("fuzz", []string{"SLEEP_TASK"}, nil)
	task := enqueue(f, mm, mockmanager.NewTask{Type: "SLEEP_TASK"})
	auth := "Delegate " + mintToken(f, mm.AccountSecret(), mm.AccountID(), time.Now())
	q := url.Values{"accountId": {mm.AccountID()}}
	paths := []string{
		"/api/agent/delegates/register?" + q.Encode(),
		"/api/agent/delegates/heartbeat-with-polling?" + q.Encode(),
		"/api/agent/delegates/register-delegate-capacity/" + delegate + "?" + q.Encode(),
		"/api/agent/v2/tasks/" + task + "/delegates/" + delegate + "?" + q.Encode(),
		"/api/executions/" + task + "/response?" + q.Encode() + "&delegateId=" + delegate,
		"/api/executions/" + task + "/task-response?" + q.Encode() + "&runnerId=runner-1",
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	f.Cleanup(hc.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		body = bytes.ReplaceAll(body, []byte("%DELEGATE%"), []byte(delegate))
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, mm.URL+paths[int(op)%len(paths)], bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		require.NoError(t, err)
		answer, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Less(t, resp.StatusCode, 500, "%s answered %d: %s", paths[int(op)%len(paths)], resp.StatusCode, answer)
		if resp.StatusCode >= 400 {
			require.Contains(t, string(answer), `"message"`, "a refusal says why")
		}
	})
}
