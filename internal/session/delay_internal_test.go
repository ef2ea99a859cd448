package session

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/retry"
)

func TestAFailedHeartbeatIsTriedAgainSoon(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Second
	require.Equal(t, interval, beatDelay(interval, 0), "a runner in touch beats at the interval")
	require.Equal(t, interval/4, beatDelay(interval, 1))
	require.Equal(t, interval/2, beatDelay(interval, 2))
	for failures := 3; failures < 10; failures++ {
		require.Equal(t, interval, beatDelay(interval, failures), "a long outage costs no more calls than the heartbeats it misses")
	}
}

func TestRegisteringAgainWaitsNoLongerThanAHeartbeat(t *testing.T) {
	t.Parallel()
	p := reregisterBackoff(retry.Policy{Initial: time.Second, Max: time.Minute}, 10*time.Second)
	require.Equal(t, retry.Policy{Initial: time.Second, Max: 10 * time.Second}, p)
	p = reregisterBackoff(retry.Policy{Initial: time.Second, Max: time.Minute}, time.Second)
	require.Equal(t, retry.Policy{Initial: 250 * time.Millisecond, Max: time.Second}, p)
	p = reregisterBackoff(retry.Policy{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}, time.Minute)
	require.Equal(t, retry.Policy{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}, p, "a shorter configured backoff is kept")
}
