// Package handlertest runs task handlers in tests: each call in a goroutine of its own, bounded
// by a guard, so a handler that fails to stop fails its test instead of hanging it.
package handlertest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// HangGuard bounds every call. It is not a speed assertion.
const HangGuard = 60 * time.Second

// Start calls run in its own goroutine; Wait collects its response, the zero R when run
// returned a Go error.
func Start[R any](run func() (R, error)) <-chan R {
	done := make(chan R, 1)
	go func() {
		resp, err := run()
		if err != nil {
			var zero R
			resp = zero
		}
		done <- resp
	}()
	return done
}

// Wait fails the test when the call does not return within HangGuard or returned a Go error.
func Wait[R any](t testing.TB, done <-chan R) R {
	t.Helper()
	select {
	case resp := <-done:
		require.NotNil(t, resp, "Run returned an error")
		return resp
	case <-time.After(HangGuard):
		t.Fatalf("Run did not return within %s", HangGuard)
		var zero R
		return zero
	}
}
