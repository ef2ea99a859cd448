package mockmanager_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	droneadmin "github.com/dlite-dev/dlite/gen/droneadmin"
	"github.com/dlite-dev/dlite/mockmanager"
)

// TestDroneAdminAPI drives the mock over its admin API: queue, read back, cancel, count.
func TestDroneAdminAPI(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	admin, err := droneadmin.NewClientWithResponses(ds.URL, droneadmin.WithHTTPClient(hc))
	require.NoError(t, err)

	bad, err := admin.QueueBuildWithResponse(ctx, droneadmin.NewBuild{Yaml: dronePipeline, Stages: []droneadmin.NewStage{}})
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, bad.StatusCode(), string(bad.Body))

	queued, err := admin.QueueBuildWithResponse(ctx, droneadmin.NewBuild{
		Yaml:   dronePipeline,
		Event:  "tag",
		Ref:    "refs/tags/v1.0.0",
		Repo:   droneadmin.NewRepo{Namespace: "acme", Name: "app", Timeout: 5},
		Stages: []droneadmin.NewStage{{Name: "default", Type: "exec", Labels: map[string]string{"zone": "a"}}},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, queued.StatusCode(), string(queued.Body))
	b := queued.JSON201
	require.Equal(t, "tag", b.Build.Event)
	require.Equal(t, "refs/tags/v1.0.0", b.Build.Ref)
	require.Equal(t, droneapi.StatusPending, b.Stages[0].Stage.Status)

	w := newDroneWire(t, ds.URL, ds.Secret())
	step := startStage(t, w, b.Stages[0].Stage.Id, 1).Steps[0]

	got, err := admin.GetBuildWithResponse(ctx, b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode(), string(got.Body))
	require.Equal(t, "runner-1", got.JSON200.Stages[0].Stage.Machine)
	stage, err := admin.GetStageWithResponse(ctx, b.Stages[0].Stage.Id)
	require.NoError(t, err)
	require.Equal(t, step.Id, stage.JSON200.Steps[0].Step.Id)
	stepRes, err := admin.GetStepWithResponse(ctx, step.Id)
	require.NoError(t, err)
	require.Equal(t, droneapi.StatusPending, stepRes.JSON200.Step.Status)

	cancelled, err := admin.CancelBuildWithResponse(ctx, b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, cancelled.StatusCode(), string(cancelled.Body))
	require.True(t, cancelled.JSON200.Cancelled)
	again, err := admin.CancelBuildWithResponse(ctx, b.Build.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, again.StatusCode())

	for _, res := range []interface{ StatusCode() int }{
		must(admin.GetBuildWithResponse(ctx, 999)),
		must(admin.GetStageWithResponse(ctx, 999)),
		must(admin.GetStepWithResponse(ctx, 999)),
		must(admin.CancelBuildWithResponse(ctx, 999)),
	} {
		require.Equal(t, http.StatusNotFound, res.StatusCode())
	}

	list, err := admin.ListBuildsWithResponse(ctx)
	require.NoError(t, err)
	require.Len(t, *list.JSON200, 1)
	counts, err := admin.ListRequestsWithResponse(ctx)
	require.NoError(t, err)
	require.Contains(t, *counts.JSON200, droneadmin.RequestCount{Route: "AcceptStage", Status: http.StatusOK, Count: 1})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
