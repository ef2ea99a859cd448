package admission

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeProbe returns scripted measurements, one per call; the last repeats.
type fakeProbe struct {
	mu      sync.Mutex
	results []fakeResult
	calls   int
	// sampled, when set, receives a value after every measurement.
	sampled chan struct{}
}

type fakeResult struct {
	m   measurement
	err error
}

func (p *fakeProbe) source() string { return "fake" }

func (p *fakeProbe) measure() (measurement, error) {
	p.mu.Lock()
	r := p.results[min(p.calls, len(p.results)-1)]
	p.calls++
	p.mu.Unlock()
	if p.sampled != nil {
		select {
		case p.sampled <- struct{}{}:
		default:
		}
	}
	return r.m, r.err
}

func memUse(pct float64) fakeResult { return fakeResult{m: measurement{mem: pct}} }

func cpuMem(cpu, mem float64) fakeResult {
	return fakeResult{m: measurement{cpu: cpu, cpuOK: true, mem: mem}}
}

func failed(msg string) fakeResult { return fakeResult{err: errors.New(msg)} }

// logLines returns the messages logged so far, one per line.
func logLines(buf *bytes.Buffer) []string {
	var lines []string
	for l := range strings.Lines(buf.String()) {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

func newTestController(opts Options, results ...fakeResult) (*Controller, *bytes.Buffer) {
	var buf bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	return newController(opts, &fakeProbe{results: results}), &buf
}

func TestHoldsBackAtTheMemoryCeilingAndLogsTransitionsOnce(t *testing.T) {
	t.Parallel()
	c, logs := newTestController(Options{MaxMemoryPercent: 90},
		memUse(50), memUse(93.14), memUse(95), memUse(90), memUse(80), memUse(85))

	steps := []struct {
		admit  bool
		reason string
	}{
		{true, ""},
		{false, "memory 93.1% ≥ ceiling 90%"},
		{false, "memory 95.0% ≥ ceiling 90%"},
		{false, "memory 90.0% ≥ ceiling 90%"},
		{true, ""},
		{true, ""},
	}
	for i, want := range steps {
		c.sample()
		ok, reason := c.Admit()
		require.Equal(t, want.admit, ok, "step %d", i)
		require.Equal(t, want.reason, reason, "step %d", i)
		require.Equal(t, !want.admit, c.Usage().Holding, "step %d", i)
	}

	require.Equal(t, []string{
		`level=WARN msg="holding back: memory 93.1% ≥ ceiling 90%" cpu_percent=0 memory_percent=93.1 source=fake`,
		`level=INFO msg="no longer holding back" cpu_percent=0 memory_percent=80 source=fake`,
	}, logLines(logs))
}

func TestCPUCeiling(t *testing.T) {
	t.Parallel()
	c, logs := newTestController(Options{MaxCPUPercent: 75.5},
		fakeResult{m: measurement{cpu: 99, cpuOK: false, mem: 99}}, cpuMem(75.5, 99), cpuMem(10, 99))

	c.sample()
	ok, _ := c.Admit()
	require.True(t, ok, "CPU use is unknown after one sample, and memory has no ceiling")

	c.sample()
	ok, reason := c.Admit()
	require.False(t, ok)
	require.Equal(t, "cpu 75.5% ≥ ceiling 75.5%", reason)

	c.sample()
	ok, _ = c.Admit()
	require.True(t, ok)
	require.Len(t, logLines(logs), 2)
}

func TestBothCeilings(t *testing.T) {
	t.Parallel()
	c, logs := newTestController(Options{MaxCPUPercent: 80, MaxMemoryPercent: 90},
		cpuMem(85, 95), cpuMem(50, 95), cpuMem(50, 50))

	c.sample()
	ok, reason := c.Admit()
	require.False(t, ok)
	require.Equal(t, "cpu 85.0% ≥ ceiling 80%, memory 95.0% ≥ ceiling 90%", reason)

	c.sample()
	ok, reason = c.Admit()
	require.False(t, ok)
	require.Equal(t, "memory 95.0% ≥ ceiling 90%", reason)

	c.sample()
	ok, _ = c.Admit()
	require.True(t, ok)

	u := c.Usage()
	require.Equal(t, 50.0, u.CPUPercent)
	require.Equal(t, 50.0, u.MemoryPercent)
	require.Equal(t, "fake", u.Source)
	require.False(t, u.Holding)
	require.False(t, u.SampledAt.IsZero())
	require.Len(t, logLines(logs), 2, "one line to start holding back, one to stop: %v", logLines(logs))
}

func TestMeasurementFailureAdmitsAndLogsOnce(t *testing.T) {
	t.Parallel()
	c, logs := newTestController(Options{MaxMemoryPercent: 50},
		memUse(60), failed("cpu.stat vanished"), failed("cpu.stat vanished"), memUse(70))

	c.sample()
	ok, _ := c.Admit()
	require.False(t, ok)

	c.sample()
	ok, _ = c.Admit()
	require.True(t, ok, "a failed measurement admits")
	require.Equal(t, 60.0, c.Usage().MemoryPercent, "the last good measurement stays visible")
	c.sample()

	c.sample()
	ok, _ = c.Admit()
	require.False(t, ok)

	lines := logLines(logs)
	require.Len(t, lines, 4, "%v", lines)
	require.Contains(t, lines[0], "holding back: memory 60.0%")
	require.Contains(t, lines[1], "level=WARN msg=\"cannot measure resource use")
	require.Contains(t, lines[1], `error="cpu.stat vanished"`)
	require.Contains(t, lines[2], "resource measurement recovered")
	require.Contains(t, lines[3], "holding back: memory 70.0%")
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	c := New(Options{CgroupRoot: t.TempDir()})
	ok, reason := c.Admit()
	require.True(t, ok)
	require.Empty(t, reason)
	require.Equal(t, Usage{}, c.Usage())

	// Run returns at once and samples nothing (there is no probe to sample with).
	require.NoError(t, c.Run(context.Background()))
	require.Nil(t, c.probe)

	c = New(Options{MaxCPUPercent: -5, MaxMemoryPercent: 0})
	require.NoError(t, c.Run(context.Background()), "a negative ceiling is no ceiling")
}

func TestNewChoosesTheSource(t *testing.T) {
	t.Parallel()
	g := newFakeCgroup(t, map[string]string{
		"cgroup.controllers": "cpu memory", "cpu.stat": usec(0), "memory.current": "1",
	})
	require.Equal(t, SourceCgroup, New(Options{MaxMemoryPercent: 90, CgroupRoot: g.root}).Usage().Source)
	require.Equal(t, SourceHost, New(Options{MaxMemoryPercent: 90, CgroupRoot: t.TempDir()}).Usage().Source)
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	t.Parallel()
	p := &fakeProbe{results: []fakeResult{memUse(10), memUse(95)}, sampled: make(chan struct{}, 1)}
	c := newController(Options{MaxMemoryPercent: 90, Interval: time.Millisecond}, p)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	// Admit and Usage race with the sampler by design; -race checks they may.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					c.Admit()
					c.Usage()
				}
			}
		})
	}

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for !cond() {
			select {
			case <-p.sampled:
			case <-timeout:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("holding back", func() bool { ok, _ := c.Admit(); return !ok })

	require.ErrorIs(t, c.Run(ctx), ErrAlreadyRunning)

	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	close(stop)
	readers.Wait()

	ok, _ := c.Admit()
	require.True(t, ok, "a stopped sampler does not hold the runner back")
	require.Equal(t, 95.0, c.Usage().MemoryPercent)

	// A stopped Controller can run again.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	require.ErrorIs(t, c.Run(ctx2), context.Canceled)
}

func TestRunWithHostProbe(t *testing.T) {
	t.Parallel()
	// A real sampler on this machine, against a directory without cgroup files: it must start,
	// sample and stop cleanly. The ceiling is high enough not to matter.
	c := New(Options{MaxCPUPercent: 100, MaxMemoryPercent: 100, Interval: 5 * time.Millisecond, CgroupRoot: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	deadline := time.After(10 * time.Second)
	for c.Usage().SampledAt.IsZero() {
		select {
		case <-deadline:
			t.Fatal("no sample taken")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Equal(t, SourceHost, c.Usage().Source)
}
