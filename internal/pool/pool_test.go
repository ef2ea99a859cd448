package pool_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/pool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReserveNeverExceedsSize(t *testing.T) {
	t.Parallel()
	p := pool.New(3)
	require.Equal(t, 2, p.TryReserve(2))
	require.Equal(t, 1, p.TryReserve(5))
	require.Equal(t, 0, p.TryReserve(1))
	require.Equal(t, 0, p.Free())
	p.Release()
	require.Equal(t, 1, p.Free())
	require.Equal(t, 2, p.InUse())
}

func TestGoBoundsConcurrency(t *testing.T) {
	t.Parallel()
	const size = 4
	p := pool.New(size)
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	started := 0
	for started < 40 {
		if p.TryReserve(1) == 0 {
			<-p.Freed()
			continue
		}
		started++
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			n := running.Add(1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
		})
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int32(size))
	require.NoError(t, p.Wait(context.Background()))
}

func TestWaitHonoursContext(t *testing.T) {
	t.Parallel()
	p := pool.New(1)
	require.NoError(t, p.Wait(context.Background()), "an unused pool is idle")
	require.Equal(t, 1, p.TryReserve(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Wait(ctx), context.Canceled)
	p.Release()
	require.NoError(t, p.Wait(context.Background()))
}

func TestReleaseWithoutReservePanics(t *testing.T) {
	t.Parallel()
	require.Panics(t, func() { pool.New(1).Release() })
}
