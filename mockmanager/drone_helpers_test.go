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

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/mockmanager"
)

const dronePipeline = "kind: pipeline\ntype: exec\nname: default\nsteps:\n- name: greet\n  commands: [echo hi]\n"

// droneWire speaks the runner RPC the way runner-go does: X-Drone-Token on every call, JSON
// bodies without a Content-Type.
type droneWire struct {
	t      testing.TB
	url    string
	secret string
	hc     *http.Client
}

func newDroneWire(t testing.TB, url, secret string) *droneWire {
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	return &droneWire{t: t, url: url, secret: secret, hc: hc}
}

// do sends one call and returns the status, headers and body of the answer.
func (w *droneWire) do(method, path, body string) (int, http.Header, string) {
	w.t.Helper()
	ctx := context.Background()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.url+path, r)
	require.NoError(w.t, err)
	req.Header.Set("X-Drone-Token", w.secret)
	resp, err := w.hc.Do(req)
	require.NoError(w.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// ok sends a call that must answer 200 and decodes the answer into v, if not nil.
func (w *droneWire) ok(method, path string, in, v any) {
	w.t.Helper()
	body := ""
	if in != nil {
		b, err := json.Marshal(in)
		require.NoError(w.t, err)
		body = string(b) + "\n"
	}
	status, _, out := w.do(method, path, body)
	require.Equal(w.t, http.StatusOK, status, "%s %s: %s", method, path, out)
	if v != nil {
		require.NoError(w.t, json.Unmarshal([]byte(out), v))
	}
}

// status sends a call and returns the status and body only.
func (w *droneWire) status(method, path string, in any) (int, string) {
	w.t.Helper()
	body := ""
	if in != nil {
		b, err := json.Marshal(in)
		require.NoError(w.t, err)
		body = string(b)
	}
	st, _, out := w.do(method, path, body)
	return st, out
}

func queueDrone(t testing.TB, ds *mockmanager.DroneTestServer, nb mockmanager.NewBuild) mockmanager.BuildState {
	t.Helper()
	if nb.Yaml == "" {
		nb.Yaml = dronePipeline
	}
	if len(nb.Stages) == 0 {
		nb.Stages = []mockmanager.NewStage{{Name: "default", Type: "exec"}}
	}
	b, err := ds.QueueBuild(nb)
	require.NoError(t, err)
	return b
}

// startStage accepts the stage and reports it running with n steps, returning it as the server
// answered (steps with ids).
func startStage(t testing.TB, w *droneWire, id int64, n int) droneapi.Stage {
	t.Helper()
	var st droneapi.Stage
	w.ok(http.MethodPost, fmt.Sprintf("/rpc/v2/stage/%d?machine=runner-1", id), nil, &st)
	st.Status, st.Started = droneapi.StatusRunning, time.Now().Unix()
	for i := range n {
		st.Steps = append(st.Steps, droneapi.Step{Number: i + 1, Name: fmt.Sprintf("step-%d", i+1), StepId: id, Status: droneapi.StatusPending})
	}
	var out droneapi.Stage
	w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", id), st, &out)
	return out
}
