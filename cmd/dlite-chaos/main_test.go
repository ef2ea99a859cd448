package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBadArguments(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run(context.Background(), []string{"-tasks", "many"}, &out, &errOut))
	require.Contains(t, errOut.String(), "-tasks")
	errOut.Reset()
	require.Equal(t, 2, run(context.Background(), []string{"extra"}, &out, &errOut))
	require.Contains(t, errOut.String(), "unexpected arguments")
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, &out, &errOut))
	require.Empty(t, out.String())
}

// A small quiet run: 0 turns each fault and the kill off, the figures go to stdout, and a
// passing run exits 0 and removes its temporary work directory.
func TestSmallRunWithoutFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real runner processes")
	}
	t.Setenv("TMPDIR", t.TempDir())
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-tasks", "20", "-error-rate", "0", "-reset-rate", "0", "-lost-answers", "0",
		"-max-latency", "0", "-kill-at", "0", "-quiet", "-deadline", "2m"}, &out, &errOut)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	require.Contains(t, out.String(), "faults: 0% 503, 0% resets, no latency, 0% lost answers; delegate timeout 8s; no kill")
	require.Contains(t, out.String(), "runner starts / SIGKILLs                    2 / 0")
	require.Contains(t, out.String(), "chaos: PASS")
	require.Empty(t, errOut.String(), "quiet")
	left, err := os.ReadDir(os.Getenv("TMPDIR"))
	require.NoError(t, err)
	require.Empty(t, left, "the work directory of a passing run is removed")
}
