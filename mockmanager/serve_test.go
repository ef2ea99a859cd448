package mockmanager_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

func TestStartPicksAPortAndCloses(t *testing.T) {
	t.Parallel()
	s, err := mockmanager.New(mockmanager.Options{AccountID: "acct", Tokens: []string{"tok"}})
	require.NoError(t, err)
	r, err := s.Start("127.0.0.1:0")
	require.NoError(t, err)
	require.NotContains(t, r.URL(), ":0")

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(r.URL() + "/admin/faults")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)

	require.NoError(t, r.Close())
	<-r.Done()
	_, err = hc.Get(r.URL() + "/admin/faults")
	require.Error(t, err)
}

func TestListenAndServeStopsWithItsContext(t *testing.T) {
	t.Parallel()
	s, err := mockmanager.New(mockmanager.Options{AccountID: "acct", Tokens: []string{"tok"}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0", func(url string) { urls <- url }) }()

	url := <-urls
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(url + "/admin/delegates")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)

	cancel()
	require.NoError(t, <-done)
}

func TestStartFailsOnABusyAddress(t *testing.T) {
	t.Parallel()
	s, err := mockmanager.New(mockmanager.Options{AccountID: "acct", Tokens: []string{"tok"}})
	require.NoError(t, err)
	r, err := s.Start("127.0.0.1:0")
	require.NoError(t, err)
	defer r.Close()
	_, err = s.Start(r.Addr().String())
	require.Error(t, err)
}
