package mockmanager_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/mockmanager"
)

// TestDroneChecksTheSecretBeforeRouting: no secret configured gives 403, a missing or wrong
// token 401, both with an empty body and on unknown paths too; each refusal is counted by route.
func TestDroneChecksTheSecretBeforeRouting(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{Secret: "right"})
	noSecret, err := mockmanager.NewDrone(mockmanager.DroneOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	hs := httptest.NewServer(noSecret.Handler())
	t.Cleanup(hs.Close)

	tests := []struct {
		name   string
		url    string
		token  string
		path   string
		status int
	}{
		{"no server secret", hs.URL, "right", "/rpc/v2/ping", http.StatusForbidden},
		{"no server secret, unknown path", hs.URL, "", "/rpc/v2/nodes/x", http.StatusForbidden},
		{"missing token", ds.URL, "", "/rpc/v2/ping", http.StatusUnauthorized},
		{"wrong token", ds.URL, "wrong", "/rpc/v2/ping", http.StatusUnauthorized},
		{"wrong token, unknown path", ds.URL, "wrong", "/rpc/v2/nodes/x", http.StatusUnauthorized},
		{"right token", ds.URL, "right", "/rpc/v2/ping", http.StatusOK},
		{"right token, unknown path", ds.URL, "right", "/rpc/v2/nodes/x", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, _, body := newDroneWire(t, tt.url, tt.token).do(http.MethodPost, tt.path, "")
			require.Equal(t, tt.status, status)
			if status != http.StatusNotFound {
				require.Empty(t, body)
			}
		})
	}
	t.Cleanup(func() {
		require.Equal(t, int64(2), ds.RequestCount("Ping", http.StatusUnauthorized))
		require.Equal(t, int64(1), ds.RequestCount("unrouted", http.StatusUnauthorized))
		require.Equal(t, int64(1), noSecret.RequestCount("Ping", http.StatusForbidden))
	})
}

// TestDroneFilterMatching: which runners a stage is offered to.
func TestDroneFilterMatching(t *testing.T) {
	t.Parallel()
	linux := mockmanager.NewStage{Name: "s", Kind: "pipeline", Type: "docker", Os: "linux", Arch: "amd64"}
	withVariant := linux
	withVariant.Variant, withVariant.Arch = "v7", "arm"
	labelled := linux
	labelled.Labels = map[string]string{"zone": "a"}
	tests := []struct {
		name    string
		stage   mockmanager.NewStage
		filter  droneapi.Filter
		offered bool
	}{
		{"empty filter takes a pipeline docker stage", linux, droneapi.Filter{}, true},
		{"same everything", linux, droneapi.Filter{Kind: "pipeline", Type: "docker", Os: "linux", Arch: "amd64"}, true},
		{"other type", linux, droneapi.Filter{Kind: "pipeline", Type: "exec"}, false},
		{"other kind", linux, droneapi.Filter{Kind: "secret", Type: "docker"}, false},
		{"other os", linux, droneapi.Filter{Os: "windows", Arch: "amd64"}, false},
		{"os without arch", linux, droneapi.Filter{Os: "linux"}, false},
		{"variant only from the runner", linux, droneapi.Filter{Os: "linux", Arch: "amd64", Variant: "v8"}, true},
		{"variant the stage sets", withVariant, droneapi.Filter{Os: "linux", Arch: "arm", Variant: "v7"}, true},
		{"variant the stage sets, runner differs", withVariant, droneapi.Filter{Os: "linux", Arch: "arm", Variant: "v6"}, false},
		{"variant ignored without os or arch", withVariant, droneapi.Filter{}, true},
		{"labels equal", labelled, droneapi.Filter{Labels: map[string]string{"zone": "a"}}, true},
		{"labels differ", labelled, droneapi.Filter{Labels: map[string]string{"zone": "b"}}, false},
		{"runner has more labels", labelled, droneapi.Filter{Labels: map[string]string{"zone": "a", "x": "y"}}, false},
		{"stage has labels, runner none", labelled, droneapi.Filter{}, false},
		{"runner has labels, stage none", linux, droneapi.Filter{Labels: map[string]string{"zone": "a"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 20 * time.Millisecond})
			queueDrone(t, ds, mockmanager.NewBuild{Stages: []mockmanager.NewStage{tt.stage}})
			status, _ := newDroneWire(t, ds.URL, ds.Secret()).status(http.MethodPost, "/rpc/v2/stage", tt.filter)
			if tt.offered {
				require.Equal(t, http.StatusOK, status)
			} else {
				require.Equal(t, http.StatusNoContent, status)
			}
		})
	}
}

// TestDroneRequestIsALongPoll: a poll with nothing to hand out ends with 204 after the poll
// timeout; a build queued while it waits is handed out at once.
func TestDroneRequestIsALongPoll(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 30 * time.Millisecond})
	w := newDroneWire(t, ds.URL, ds.Secret())
	status, headers, body := w.do(http.MethodPost, "/rpc/v2/stage", `{"kind":"pipeline","type":"exec","os":"","arch":"","variant":"","kernel":""}`)
	require.Equal(t, http.StatusNoContent, status)
	require.Empty(t, body)
	require.Equal(t, "no-cache, private, max-age=0", headers.Get("Cache-Control"))

	long := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: time.Minute})
	lw := newDroneWire(t, long.URL, long.Secret())
	got := make(chan droneapi.Stage, 1)
	go func() {
		var st droneapi.Stage
		lw.ok(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"}, &st)
		got <- st
	}()
	require.Eventually(t, func() bool { return long.OpenRequests("RequestStage") == 1 }, 10*time.Second, time.Millisecond)
	b := queueDrone(t, long, mockmanager.NewBuild{})
	require.Equal(t, b.Stages[0].Stage.Id, (<-got).Id)
}

// TestDroneOffersAStageUntilAccepted: two runners get the same stage; the first to accept wins
// and the other gets 409; the stage is offered no more.
func TestDroneOffersAStageUntilAccepted(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 20 * time.Millisecond})
	w := newDroneWire(t, ds.URL, ds.Secret())
	b := queueDrone(t, ds, mockmanager.NewBuild{})
	var a, c droneapi.Stage
	w.ok(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"}, &a)
	w.ok(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"}, &c)
	require.Equal(t, a.Id, c.Id)
	require.Empty(t, a.Machine)

	var accepted droneapi.Stage
	w.ok(http.MethodPost, fmt.Sprintf("/rpc/v2/stage/%d?machine=%s", a.Id, "runner%20one"), nil, &accepted)
	require.Equal(t, "runner one", accepted.Machine)
	require.Equal(t, a.Version+1, accepted.Version)
	require.Equal(t, droneapi.StatusPending, accepted.Status)

	status, body := w.status(http.MethodPost, fmt.Sprintf("/rpc/v2/stage/%d?machine=runner-2", a.Id), nil)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "Optimistic Lock Error", body)
	status, _ = w.status(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"})
	require.Equal(t, http.StatusNoContent, status)

	status, body = w.status(http.MethodPost, "/rpc/v2/stage/999?machine=x", nil)
	require.Equal(t, http.StatusInternalServerError, status)
	require.Equal(t, "sql: no rows in result set", body)
	st, err := ds.Stage(b.Stages[0].Stage.Id)
	require.NoError(t, err)
	require.Equal(t, "runner one", st.Stage.Machine)
}

// TestDroneDetails: capitalised config keys with base64 YAML and a null hash, JSON without a
// Content-Type, and secrets pull requests may not read left out of pull request builds.
func TestDroneDetails(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{System: droneapi.System{Host: "drone.test", Proto: "http"}})
	w := newDroneWire(t, ds.URL, ds.Secret())
	secrets := []mockmanager.NewSecret{{Name: "open", Data: "1", PullRequest: true}, {Name: "closed", Data: "2"}}
	push := queueDrone(t, ds, mockmanager.NewBuild{Secrets: secrets, Repo: mockmanager.NewRepo{Name: "a"}})
	pr := queueDrone(t, ds, mockmanager.NewBuild{Secrets: secrets, Event: "pull_request", Repo: mockmanager.NewRepo{Name: "b"}})

	status, headers, body := w.do(http.MethodGet, fmt.Sprintf("/rpc/v2/stage/%d", push.Stages[0].Stage.Id), "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "text/plain; charset=utf-8", headers.Get("Content-Type"), "JSON leaves without a Content-Type; Go sniffs one")
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	require.JSONEq(t, fmt.Sprintf(`{"Data":%q,"Hash":null}`, base64.StdEncoding.EncodeToString([]byte(dronePipeline))), string(raw["config"]))
	var d droneapi.Details
	require.NoError(t, json.Unmarshal([]byte(body), &d))
	require.Len(t, d.Secrets, 2)
	require.Equal(t, "drone.test", d.System.Host)
	require.Equal(t, "octocat/a", d.Repository.Slug)
	require.Len(t, d.Build.Stages, 1)

	w.ok(http.MethodGet, fmt.Sprintf("/rpc/v2/stage/%d", pr.Stages[0].Stage.Id), nil, &d)
	require.Len(t, d.Secrets, 1)
	require.Equal(t, "open", d.Secrets[0].Name)

	status, body = w.status(http.MethodGet, "/rpc/v2/stage/999", nil)
	require.Equal(t, http.StatusInternalServerError, status)
	require.Equal(t, "sql: no rows in result set", body)
}

// TestDroneStageUpdates: before-all inserts the steps (path id ignored), a second before-all
// fails on the step numbers after saving the stage, after-all stops at the first stale step
// and leaves the stage unsaved, and the last stage to finish finalises the build.
func TestDroneStageUpdates(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	w := newDroneWire(t, ds.URL, ds.Secret())
	b := queueDrone(t, ds, mockmanager.NewBuild{})
	id := b.Stages[0].Stage.Id
	var accepted droneapi.Stage
	w.ok(http.MethodPost, fmt.Sprintf("/rpc/v2/stage/%d?machine=m", id), nil, &accepted)

	accepted.Status, accepted.Started = droneapi.StatusRunning, 100
	accepted.Steps = []droneapi.Step{
		{Number: 1, Name: "a", StepId: id, Status: droneapi.StatusPending, Image: "alpine", DependsOn: []string{}},
		{Number: 2, Name: "b", StepId: id, Status: droneapi.StatusPending, DependsOn: []string{"a"}, Errignore: true},
	}
	var running droneapi.Stage
	w.ok(http.MethodPut, "/rpc/v2/stage/424242", accepted, &running) // the body's id decides
	require.Equal(t, accepted.Version+1, running.Version)
	require.Len(t, running.Steps, 2)
	for i, sp := range running.Steps {
		require.NotZero(t, sp.Id)
		require.Equal(t, int64(1), sp.Version)
		require.Equal(t, i+1, sp.Number)
		require.Equal(t, id, sp.StepId)
	}
	bs, err := ds.Build(b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusRunning, bs.Build.Status)

	again := running
	status, body := w.status(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", id), again)
	require.Equal(t, http.StatusInternalServerError, status)
	require.Contains(t, body, "UNIQUE constraint failed")
	st, err := ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, running.Version+1, st.Stage.Version, "the stage row was saved before the steps failed")

	final := running
	final.Version = st.Stage.Version
	final.Status, final.Stopped = droneapi.StatusSuccess, 200
	final.Steps = []droneapi.Step{running.Steps[0], running.Steps[1]}
	final.Steps[0].Status, final.Steps[1].Status = droneapi.StatusSuccess, droneapi.StatusFailure
	final.Steps[1].Version = 7
	status, body = w.status(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", id), final)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "Optimistic Lock Error", body)
	st, err = ds.Stage(id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusRunning, st.Stage.Status, "the stage is not saved after a step conflict")
	require.Equal(t, droneapi.StatusSuccess, st.Steps[0].Step.Status, "steps before the conflict were saved")

	final.Steps[0].Version = st.Steps[0].Step.Version
	final.Steps[1].Version = st.Steps[1].Step.Version
	var done droneapi.Stage
	w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", id), final, &done)
	require.Equal(t, droneapi.StatusSuccess, done.Status)
	bs, err = ds.Build(b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusSuccess, bs.Build.Status)
	require.NotZero(t, bs.Build.Finished)
}

// TestDroneStepUpdatesAndLogs: the live stream exists only while the step runs, keeps the last
// 5000 lines, and the upload is stored byte for byte, once.
func TestDroneStepUpdatesAndLogs(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	w := newDroneWire(t, ds.URL, ds.Secret())
	b := queueDrone(t, ds, mockmanager.NewBuild{})
	step := startStage(t, w, b.Stages[0].Stage.Id, 1).Steps[0]
	batch := fmt.Sprintf("/rpc/v2/step/%d/logs/batch", step.Id)

	status, body := w.status(http.MethodPost, batch, []droneapi.Line{{Out: "early\n"}})
	require.Equal(t, http.StatusInternalServerError, status)
	require.Equal(t, "stream: not found", body)

	step.Status, step.Started = droneapi.StatusRunning, 10
	w.ok(http.MethodPut, "/rpc/v2/step/0", step, &step) // the body's id decides
	require.Equal(t, int64(2), step.Version)
	stale := step
	stale.Version = 1
	status, _ = w.status(http.MethodPut, fmt.Sprintf("/rpc/v2/step/%d", step.Id), stale)
	require.Equal(t, http.StatusConflict, status)

	lines := make([]droneapi.Line, 6000)
	for i := range lines {
		lines[i] = droneapi.Line{Pos: i, Out: fmt.Sprintf("line %d\n", i), Time: int64(i / 100)}
	}
	w.ok(http.MethodPost, batch, lines[:3000], nil)
	w.ok(http.MethodPost, batch, lines[3000:], nil)
	got, err := ds.Step(step.Id)
	require.NoError(t, err)
	require.True(t, got.StreamOpen)
	require.Len(t, got.Lines, 5000)
	require.Equal(t, 1000, got.Lines[0].Pos)

	upload := fmt.Sprintf("/rpc/v2/step/%d/logs/upload", step.Id)
	raw := `[ {"pos":0,"out":"x\n","time":0} ]` + "\n"
	st, _, _ := w.do(http.MethodPost, upload, raw)
	require.Equal(t, http.StatusOK, st)
	status, body = w.status(http.MethodPost, upload, []droneapi.Line{})
	require.Equal(t, http.StatusInternalServerError, status)
	require.Contains(t, body, "UNIQUE constraint failed")

	step.Status, step.Stopped, step.ExitCode = droneapi.StatusFailure, 20, 2
	w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/step/%d", step.Id), step, &step)
	got, err = ds.Step(step.Id)
	require.NoError(t, err)
	require.Equal(t, raw, got.Log)
	require.False(t, got.StreamOpen)
	require.Equal(t, 2, got.Step.ExitCode)
	status, _ = w.status(http.MethodPost, batch, []droneapi.Line{{Out: "late\n"}})
	require.Equal(t, http.StatusInternalServerError, status)

	other := queueDrone(t, ds, mockmanager.NewBuild{Repo: mockmanager.NewRepo{Name: "other"}})
	s2 := startStage(t, w, other.Stages[0].Stage.Id, 1).Steps[0]
	st, _, _ = w.do(http.MethodPost, fmt.Sprintf("/rpc/v2/step/%d/logs/upload", s2.Id), "null\n")
	require.Equal(t, http.StatusOK, st, "an empty log is uploaded as null")
}

// TestDroneWatch: a watch open during a cancel answers 200 at once; a cancel made while no
// watch was open is missed by the next watch when the recheck delay is longer than the poll
// (the real server's gap), and found after the delay when it is shorter.
func TestDroneWatch(t *testing.T) {
	t.Parallel()
	t.Run("open watch sees the cancel", func(t *testing.T) {
		t.Parallel()
		ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: time.Minute})
		w := newDroneWire(t, ds.URL, ds.Secret())
		b := queueDrone(t, ds, mockmanager.NewBuild{})
		step := startStage(t, w, b.Stages[0].Stage.Id, 2).Steps[0]
		step.Status, step.Started = droneapi.StatusRunning, 10
		w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/step/%d", step.Id), step, &step)

		answered := make(chan int, 1)
		go func() {
			st, _ := w.status(http.MethodPost, fmt.Sprintf("/rpc/v2/build/%d/watch", b.Build.Id), nil)
			answered <- st
		}()
		require.Eventually(t, func() bool { return ds.Watching(b.Build.Id) == 1 }, 10*time.Second, time.Millisecond)
		cancelled, err := ds.CancelBuild(b.Build.Id)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, <-answered)

		require.Equal(t, droneapi.StatusKilled, cancelled.Build.Status)
		stage := cancelled.Stages[0]
		require.Equal(t, droneapi.StatusKilled, stage.Stage.Status)
		require.Equal(t, droneapi.StatusKilled, stage.Steps[0].Step.Status)
		require.Equal(t, droneapi.StatusSkipped, stage.Steps[1].Step.Status)
		require.Equal(t, 130, stage.Steps[0].Step.ExitCode)

		// The runner's final update carries the versions it knew: 409.
		step.Status = droneapi.StatusKilled
		status, _ := w.status(http.MethodPut, fmt.Sprintf("/rpc/v2/step/%d", step.Id), step)
		require.Equal(t, http.StatusConflict, status)
		_, err = ds.CancelBuild(b.Build.Id)
		require.ErrorIs(t, err, mockmanager.ErrBuildDone)
	})
	gap := func(t *testing.T, recheck time.Duration) int {
		ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 300 * time.Millisecond, CancelRecheck: recheck})
		w := newDroneWire(t, ds.URL, ds.Secret())
		b := queueDrone(t, ds, mockmanager.NewBuild{})
		_, err := ds.CancelBuild(b.Build.Id)
		require.NoError(t, err)
		st, _ := w.status(http.MethodPost, fmt.Sprintf("/rpc/v2/build/%d/watch", b.Build.Id), nil)
		return st
	}
	t.Run("cancel in the gap is missed", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, http.StatusNoContent, gap(t, time.Minute))
	})
	t.Run("cancel in the gap is found after the recheck delay", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, http.StatusOK, gap(t, 20*time.Millisecond))
	})
	t.Run("unknown build", func(t *testing.T) {
		t.Parallel()
		ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
		status, body := newDroneWire(t, ds.URL, ds.Secret()).status(http.MethodPost, "/rpc/v2/build/77/watch", nil)
		require.Equal(t, http.StatusInternalServerError, status)
		require.Equal(t, "sql: no rows in result set", body)
	})
}

// TestDroneDependentStages: a stage waits for its dependencies and runs or is skipped by its
// on_success / on_failure rules; the first failed stage gives the build its status.
func TestDroneDependentStages(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 20 * time.Millisecond})
	w := newDroneWire(t, ds.URL, ds.Secret())
	b := queueDrone(t, ds, mockmanager.NewBuild{Stages: []mockmanager.NewStage{
		{Name: "build", Type: "exec"},
		{Name: "deploy", Type: "exec", DependsOn: []string{"build"}},
		{Name: "notify", Type: "exec", DependsOn: []string{"build"}, OnFailure: true},
	}})
	require.Equal(t, droneapi.StatusWaitingOnDependencies, b.Stages[1].Stage.Status)

	var offered droneapi.Stage
	w.ok(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"}, &offered)
	require.Equal(t, "build", offered.Name, "only the stage without dependencies is offered")
	st := startStage(t, w, offered.Id, 0)
	st.Status, st.Stopped = droneapi.StatusFailure, 5
	w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", st.Id), st, nil)

	bs, err := ds.Build(b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusSkipped, bs.Stages[1].Stage.Status, "deploy runs only on success")
	require.Equal(t, droneapi.StatusPending, bs.Stages[2].Stage.Status, "notify runs on failure")
	require.Equal(t, droneapi.StatusRunning, bs.Build.Status)

	w.ok(http.MethodPost, "/rpc/v2/stage", droneapi.Filter{Type: "exec"}, &offered)
	require.Equal(t, "notify", offered.Name)
	st = startStage(t, w, offered.Id, 0)
	st.Status = droneapi.StatusSuccess
	w.ok(http.MethodPut, fmt.Sprintf("/rpc/v2/stage/%d", st.Id), st, nil)
	done, err := ds.WaitBuild(t.Context(), b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusFailure, done.Build.Status)
}

// TestDroneRefusesWhatTheServerRefuses: malformed requests fail the way the real server fails
// them.
func TestDroneRefusesWhatTheServerRefuses(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	w := newDroneWire(t, ds.URL, ds.Secret())
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"malformed JSON", http.MethodPost, "/rpc/v2/stage", `{"kind":`, 500, ""},
		{"empty body", http.MethodPut, "/rpc/v2/step/1", ``, 500, "body"},
		{"wrong field type", http.MethodPut, "/rpc/v2/step/1", `{"id":"x","step_id":1,"number":1,"name":"a","status":"running","exit_code":0,"version":1}`, 500, "id"},
		{"unknown status", http.MethodPut, "/rpc/v2/step/1", `{"id":1,"step_id":1,"number":1,"name":"a","status":"weird","exit_code":0,"version":1}`, 500, "status"},
		{"path id not a number", http.MethodGet, "/rpc/v2/stage/abc", ``, 500, "stageId"},
		{"wrong method", http.MethodDelete, "/rpc/v2/stage/1", ``, 405, ""},
		{"bad card", http.MethodPost, "/rpc/v2/step/1/card", `{"schema":1}`, 400, `"message"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, _, body := w.do(tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, status, body)
			require.Contains(t, body, tt.contains)
			require.NotContains(t, body, "violates the contract")
		})
	}
}

// TestDroneQueueBuildRefusesImpossibleBuilds.
func TestDroneQueueBuildRefusesImpossibleBuilds(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	for name, nb := range map[string]mockmanager.NewBuild{
		"no stages":          {Yaml: "x"},
		"duplicate stage":    {Yaml: "x", Stages: []mockmanager.NewStage{{Name: "a"}, {Name: "a"}}},
		"unknown dependency": {Yaml: "x", Stages: []mockmanager.NewStage{{Name: "a", DependsOn: []string{"b"}}}},
		"self dependency":    {Yaml: "x", Stages: []mockmanager.NewStage{{Name: "a", DependsOn: []string{"a"}}}},
	} {
		_, err := ds.QueueBuild(nb)
		require.ErrorIs(t, err, errs.ErrInvalidTaskData, name)
	}
}

// TestDroneCountsRequests: a runner that retries a refused secret in a loop shows in the counts.
func TestDroneCountsRequests(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 10 * time.Millisecond})
	bad := newDroneWire(t, ds.URL, "wrong")
	good := newDroneWire(t, ds.URL, ds.Secret())
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { bad.do(http.MethodPost, "/rpc/v2/stage", `{}`) })
	}
	wg.Wait()
	good.do(http.MethodPost, "/rpc/v2/stage", `{"kind":"","type":"","os":"","arch":"","variant":"","kernel":""}`)
	require.Equal(t, []mockmanager.RequestCount{
		{Route: "RequestStage", Status: http.StatusNoContent, Count: 1},
		{Route: "RequestStage", Status: http.StatusUnauthorized, Count: 5},
	}, ds.Requests())
	require.Equal(t, int64(6), ds.RequestCount("RequestStage", 0))
	require.Zero(t, ds.OpenRequests("RequestStage"))
}

// TestDroneWaitBuildEndsWithItsContext.
func TestDroneWaitBuildEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	b := queueDrone(t, ds, mockmanager.NewBuild{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := ds.WaitBuild(ctx, b.Build.Id)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.True(t, strings.Contains(err.Error(), "pending"))
	_, err = ds.WaitBuild(t.Context(), 99)
	require.ErrorIs(t, err, errs.ErrNotFound)
}

// TestDroneOverlappingWatchesNeverMissACancel: with the real server's timings a cancel made
// while no watch is open is never delivered, but a runner that opens the next watch before the
// current one ends always has one open, so it sees every cancel, whenever it comes.
func TestDroneOverlappingWatchesNeverMissACancel(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond, 700 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			t.Parallel()
			ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{PollTimeout: 400 * time.Millisecond})
			w := newDroneWire(t, ds.URL, ds.Secret())
			b := queueDrone(t, ds, mockmanager.NewBuild{})
			path := fmt.Sprintf("/rpc/v2/build/%d/watch", b.Build.Id)

			ctx, stop := context.WithCancel(t.Context())
			seen := make(chan struct{})
			var once sync.Once
			var wg sync.WaitGroup
			var watch func()
			watch = func() {
				defer wg.Done()
				opened := make(chan struct{})
				go func() {
					// Open the next watch once this one has been open for a while, before it ends.
					select {
					case <-time.After(100 * time.Millisecond):
						wg.Add(1)
						go watch()
					case <-ctx.Done():
					}
					close(opened)
				}()
				if watchOnce(ctx, w, path) == http.StatusOK {
					once.Do(func() { close(seen) })
				}
				<-opened
			}
			wg.Add(1)
			go watch()
			require.Eventually(t, func() bool { return ds.Watching(b.Build.Id) > 0 }, 10*time.Second, time.Millisecond)
			time.Sleep(delay)
			_, err := ds.CancelBuild(b.Build.Id)
			require.NoError(t, err)
			select {
			case <-seen:
			case <-time.After(10 * time.Second):
				t.Fatal("the cancel was never delivered")
			}
			stop()
			wg.Wait()
		})
	}
}

// watchOnce sends one watch and returns its status, or 0 when ctx ended the call.
func watchOnce(ctx context.Context, w *droneWire, path string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url+path, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("X-Drone-Token", w.secret)
	resp, err := w.hc.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
