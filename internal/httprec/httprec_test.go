package httprec_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/httprec"
)

func TestNothingWrittenIs200(t *testing.T) {
	r := httprec.New()
	require.Equal(t, http.StatusOK, r.Status())
	require.Empty(t, r.Body())
}

func TestWriteWithoutStatusIs200AndTheFirstStatusHolds(t *testing.T) {
	r := httprec.New()
	r.Header().Set("X-A", "1")
	_, err := r.Write([]byte("hello "))
	require.NoError(t, err)
	r.WriteHeader(http.StatusTeapot)
	_, err = r.Write([]byte("world"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.Status())
	require.Equal(t, "hello world", string(r.Body()))
	require.Equal(t, "1", r.Header().Get("X-A"))

	r = httprec.New()
	r.WriteHeader(http.StatusNotFound)
	r.WriteHeader(http.StatusOK)
	require.Equal(t, http.StatusNotFound, r.Status())
}
