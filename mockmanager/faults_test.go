package mockmanager_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

func TestFaults(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	admin := newAdminClient(t, mm)
	r := newAuthedRunner(t, mm)
	id := r.register("runner", []string{"SHELL"}, nil)
	ctx := context.Background()
	poll := func() (*managerapi.GetTaskEventsResponse, error) {
		return r.c.GetTaskEventsWithResponse(ctx, id, &managerapi.GetTaskEventsParams{AccountId: r.account})
	}

	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: new(float32(1))}))
	res, err := poll()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode())
	require.Contains(t, string(res.Body), "injected fault")
	list, err := admin.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode(), "the admin API is never faulted")

	require.NoError(t, mm.SetFaults(mockmanager.Faults{ResetRate: new(float32(1))}))
	_, err = poll()
	require.Error(t, err, "the connection is reset without an answer")
	faults, err := admin.GetFaultsWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, faults.StatusCode(), "the admin API is never faulted")

	// Latency alone only delays; every call still succeeds.
	require.NoError(t, mm.SetFaults(mockmanager.Faults{LatencyMs: new(5)}))
	for range 3 {
		res, err = poll()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode())
	}

	require.NoError(t, mm.SetFaults(mockmanager.Faults{}))
	res, err = poll()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode())
}

func TestFaultRatesAreProbabilities(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := newAuthedRunner(t, mm)
	id := r.register("runner", nil, nil)
	require.NoError(t, mm.SetFaults(mockmanager.Faults{ErrorRate: new(float32(0.5))}))
	codes := map[int]int{}
	for range 200 {
		res, err := r.c.GetTaskEventsWithResponse(context.Background(), id, &managerapi.GetTaskEventsParams{AccountId: r.account})
		require.NoError(t, err)
		codes[res.StatusCode()]++
	}
	// Both outcomes occur; the odds of either missing in 200 draws are 2^-199.
	require.Positive(t, codes[http.StatusOK])
	require.Positive(t, codes[http.StatusServiceUnavailable])
	require.Equal(t, 200, codes[http.StatusOK]+codes[http.StatusServiceUnavailable])
}
