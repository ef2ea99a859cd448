package mockmanager_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A stopped server starts again on the address it had, with its state: the way to take a manager
// down and bring it back with everything it knew.
func TestRestartOnTheSameAddressKeepsTheState(t *testing.T) {
	t.Parallel()
	s, err := mockmanager.New(mockmanager.Options{AccountID: "acct", Tokens: []string{"tok"}})
	require.NoError(t, err)
	r, err := s.Start("127.0.0.1:0")
	require.NoError(t, err)
	id, err := s.Enqueue(mockmanager.NewTask{Type: "SHELL"})
	require.NoError(t, err)
	require.NoError(t, r.Close())

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	_, err = hc.Get(r.URL() + "/admin/tasks/" + id)
	require.Error(t, err, "down")

	again, err := s.Start(r.Addr().String())
	require.NoError(t, err)
	defer again.Close()
	require.Equal(t, r.URL(), again.URL())
	res, err := hc.Get(again.URL() + "/admin/tasks/" + id)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode, "the task queued before the restart is still there")
}

// A manager that forgot its delegates answers them as strangers until they register again, and
// gives their unanswered tasks to others once they are lost.
func TestForgottenDelegatesRegisterAgain(t *testing.T) {
	t.Parallel()
	clk := newClock()
	mm := mockmanager.NewTest(t, mockmanager.Options{DelegateTimeout: time.Minute, Now: clk.Now})
	r := newAuthedRunner(t, mm)
	first := r.register("runner", []string{"SHELL"}, nil)
	held := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})
	require.Equal(t, http.StatusOK, r.acquire(held).StatusCode())
	queued := enqueue(t, mm, mockmanager.NewTask{Type: "SHELL"})

	mm.ForgetDelegates()
	hb := r.heartbeat(first)
	require.Equal(t, http.StatusOK, hb.StatusCode())
	require.Nil(t, hb.JSON200.Resource, "a heartbeat from a stranger is answered without a delegate")
	ctx := context.Background()
	poll, err := r.c.GetTaskEventsWithResponse(ctx, first, &managerapi.GetTaskEventsParams{AccountId: r.account})
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, poll.StatusCode())
	require.Equal(t, http.StatusNotFound, r.acquire(queued).StatusCode())
	st, err := mm.Task(held)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateAcquired, st.State, "the held task stays with its holder for now")

	second := r.register("runner", []string{"SHELL"}, nil)
	require.NotEqual(t, first, second)
	tasks, _ := eventIDs(r.poll())
	require.Equal(t, []string{queued}, tasks)
	require.Len(t, mm.Delegates(), 2)

	clk.Advance(2 * time.Minute)
	require.Equal(t, http.StatusOK, r.heartbeat(second).StatusCode())
	st, err = mm.Task(held)
	require.NoError(t, err)
	require.Equal(t, mockmanager.StateQueued, st.State, "the forgotten holder is lost, so its task is queued again")
}
