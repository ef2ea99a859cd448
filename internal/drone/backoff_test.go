package drone_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/retry"
)

// TestBackoffWaitsLongAfterARefusedSecret: a refused secret is retried slowly and apart from
// the reconnect policy; both are capped and jittered.
func TestBackoffWaitsLongAfterARefusedSecret(t *testing.T) {
	t.Parallel()
	reconnect := retry.Policy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	slow := retry.Policy{Initial: 10 * time.Second, Max: 40 * time.Second}
	b := drone.NewBackoff(reconnect, slow)
	unavailable := errs.New(errs.CodeManagerUnavailable, "request stage", "down")
	refused := errs.New(errs.CodeUnauthorized, "request stage", "refused")

	var waits []time.Duration
	for range 8 {
		waits = append(waits, b.Next(unavailable))
	}
	require.InDelta(t, float64(100*time.Millisecond), float64(waits[0]), float64(50*time.Millisecond), "starts at Initial ±50%")
	for _, w := range waits {
		require.LessOrEqual(t, w, 600*time.Millisecond, "never past Max +50%%")
	}
	require.Greater(t, waits[7], 150*time.Millisecond, "grows")

	first := b.Next(refused)
	require.GreaterOrEqual(t, first, 5*time.Second, "a refused secret waits from the slow policy's start")
	for range 8 {
		require.LessOrEqual(t, b.Next(refused), 60*time.Second)
	}

	b.Reset()
	require.LessOrEqual(t, b.Next(unavailable), 150*time.Millisecond, "a success starts over")
}

// TestBackoffDefaults: a zero policy means the package's.
func TestBackoffDefaults(t *testing.T) {
	t.Parallel()
	b := drone.NewBackoff(retry.Policy{}, retry.Policy{})
	require.GreaterOrEqual(t, b.Next(errs.ErrUnauthorized), drone.UnauthorizedPolicy.Initial/2)
	require.LessOrEqual(t, b.Next(errs.ErrManagerUnavailable), drone.ReconnectPolicy.Initial*3/2)
	require.Greater(t, drone.UnauthorizedPolicy.Initial, drone.ReconnectPolicy.Max/4, "a refused secret is never a tight loop")
}
