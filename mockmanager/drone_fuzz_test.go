package mockmanager_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

// FuzzDroneRequestBodies sends arbitrary bodies, JSON or not, to every runner RPC operation that
// takes one, naming a real stage and step: the mock answers each with one of the statuses the
// contract lists for it (a refusal being a 500 with a text, as on the real server), never with an
// answer that violates the contract, and keeps serving.
func FuzzDroneRequestBodies(f *testing.F) {
	f.Add(uint8(0), []byte(`{"kind":"pipeline","type":"exec","os":"linux","arch":"amd64","variant":"","kernel":"","labels":{"a":"b"}}`))
	f.Add(uint8(1), []byte(`{"id":%STAGE%,"build_id":1,"number":1,"name":"default","status":"running","errignore":false,"exit_code":0,"os":"linux","arch":"amd64","started":1,"stopped":0,"created":1,"updated":1,"version":2,"on_success":true,"on_failure":false,"steps":[{"id":0,"step_id":%STAGE%,"number":9,"name":"x","status":"pending","exit_code":0,"version":0}]}`))
	f.Add(uint8(1), []byte(`{"id":%STAGE%,"build_id":1,"number":1,"name":"default","status":"success","errignore":false,"exit_code":0,"os":"linux","arch":"amd64","started":1,"stopped":2,"created":1,"updated":1,"version":3,"on_success":true,"on_failure":false}`))
	f.Add(uint8(2), []byte(`{"id":%STEP%,"step_id":%STAGE%,"number":1,"name":"a","status":"running","exit_code":0,"version":1,"started":5}`))
	f.Add(uint8(3), []byte(`[{"pos":0,"out":"hello\n","time":0}]`))
	f.Add(uint8(4), []byte(`null`))
	f.Add(uint8(5), []byte(`{"schema":"https://x","data":{"a":[1,2]}}`))
	for op := range uint8(6) {
		for _, body := range []string{``, `null`, `[]`, `{}`, `{"a":`, `"x"`, `{"id":-1}`, `[{"pos":"x"}]`} {
			f.Add(op, []byte(body))
		}
	}
	ds := mockmanager.NewDroneTest(f, mockmanager.DroneOptions{PollTimeout: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	b, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: dronePipeline, Stages: []mockmanager.NewStage{{Name: "default", Type: "exec"}}})
	require.NoError(f, err)
	w := newDroneWire(f, ds.URL, ds.Secret())
	stageID := b.Stages[0].Stage.Id
	stage, step := fmt.Sprint(stageID), fmt.Sprint(startStage(f, w, stageID, 1).Steps[0].Id)
	ops := []struct {
		method, path string
		allowed      []int
	}{
		{http.MethodPost, "/rpc/v2/stage", []int{200, 204, 500}},
		{http.MethodPut, "/rpc/v2/stage/" + stage, []int{200, 409, 500}},
		{http.MethodPut, "/rpc/v2/step/" + step, []int{200, 409, 500}},
		{http.MethodPost, "/rpc/v2/step/" + step + "/logs/batch", []int{200, 500}},
		{http.MethodPost, "/rpc/v2/step/" + step + "/logs/upload", []int{200, 500}},
		{http.MethodPost, "/rpc/v2/step/" + step + "/card", []int{200, 400, 500}},
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	f.Cleanup(hc.CloseIdleConnections)
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		body = bytes.ReplaceAll(body, []byte("%STAGE%"), []byte(stage))
		body = bytes.ReplaceAll(body, []byte("%STEP%"), []byte(step))
		o := ops[int(op)%len(ops)]
		req, err := http.NewRequestWithContext(context.Background(), o.method, ds.URL+o.path, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Drone-Token", ds.Secret())
		resp, err := hc.Do(req)
		require.NoError(t, err)
		answer, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Contains(t, o.allowed, resp.StatusCode, "%s %s answered %d: %s", o.method, o.path, resp.StatusCode, answer)
		require.False(t, strings.Contains(string(answer), "violates the contract") || strings.Contains(string(answer), "internal error"),
			"%s %s: %s", o.method, o.path, answer)
		if resp.StatusCode >= 400 {
			require.NotEmpty(t, bytes.TrimSpace(answer), "a refusal says why")
		}
	})
}
