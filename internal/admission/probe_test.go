package admission

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/stretchr/testify/require"
)

func TestParseCPUMax(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		cpus    float64
		limited bool
		wantErr bool
	}{
		{in: "max 100000"},
		{in: "max"},
		{in: "200000 100000", cpus: 2, limited: true},
		{in: "50000 100000", cpus: 0.5, limited: true},
		{in: "150000", cpus: 1.5, limited: true},
		{in: "", wantErr: true},
		{in: "lots 100000", wantErr: true},
		{in: "100000 often", wantErr: true},
		{in: "0 100000", wantErr: true},
		{in: "100000 0", wantErr: true},
		{in: "1 2 3", wantErr: true},
	}
	for _, tc := range cases {
		cpus, limited, err := parseCPUMax(tc.in)
		if tc.wantErr {
			require.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.limited, limited, "%q", tc.in)
		require.InDelta(t, tc.cpus, cpus, 1e-9, "%q", tc.in)
	}
}

func TestParseCPUUsage(t *testing.T) {
	t.Parallel()
	d, err := parseCPUUsage("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
	require.NoError(t, err)
	require.Equal(t, 2500*time.Millisecond, d)

	_, err = parseCPUUsage("user_usec 1\n")
	require.ErrorContains(t, err, "no usage_usec")
	_, err = parseCPUUsage("usage_usec many\n")
	require.Error(t, err)
	_, err = parseCPUUsage("usage_usec 18446744073709551615\n")
	require.ErrorContains(t, err, "out of range")
}

func TestParseMemoryMax(t *testing.T) {
	t.Parallel()
	limit, limited, err := parseMemoryMax("max")
	require.NoError(t, err)
	require.False(t, limited)
	require.Zero(t, limit)

	limit, limited, err = parseMemoryMax("1073741824")
	require.NoError(t, err)
	require.True(t, limited)
	require.Equal(t, uint64(1<<30), limit)

	_, _, err = parseMemoryMax("1G")
	require.Error(t, err)
}

func TestStatValue(t *testing.T) {
	t.Parallel()
	stat := "anon 100\nfile 300\ninactive_file_extra 7\ninactive_file 200\n"
	v, ok := statValue(stat, "inactive_file")
	require.True(t, ok)
	require.Equal(t, uint64(200), v)
	_, ok = statValue(stat, "active_file")
	require.False(t, ok)
	_, ok = statValue("inactive_file lots\n", "inactive_file")
	require.False(t, ok)
}

func TestCgroupCPUPercent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		prev, cur, wall time.Duration
		cpus            float64
		want            float64
		ok              bool
	}{
		{"one of two CPUs busy", 0, time.Second, time.Second, 2, 50, true},
		{"half a CPU quota, fully used", time.Second, 1500 * time.Millisecond, time.Second, 0.5, 100, true},
		{"idle", 5 * time.Second, 5 * time.Second, time.Second, 4, 0, true},
		{"over the quota is capped", 0, 3 * time.Second, time.Second, 2, 100, true},
		{"quarter of four CPUs", 0, 2 * time.Second, 2 * time.Second, 4, 25, true},
		{"no time passed", 0, time.Second, 0, 2, 0, false},
		{"counter went back", 2 * time.Second, time.Second, time.Second, 2, 0, false},
		{"no CPUs", 0, time.Second, time.Second, 0, 0, false},
	}
	for _, tc := range cases {
		got, ok := cgroupCPUPercent(tc.prev, tc.cur, tc.wall, tc.cpus)
		require.Equal(t, tc.ok, ok, tc.name)
		require.InDelta(t, tc.want, got, 1e-9, tc.name)
	}
}

func TestHostCPUPercent(t *testing.T) {
	t.Parallel()
	prev := cpu.TimesStat{User: 10, System: 5, Idle: 80, Iowait: 5}
	cur := cpu.TimesStat{User: 16, System: 7, Idle: 90, Iowait: 7, Guest: 3}
	// busy +8, idle and iowait +12: 8 of 20. Guest is inside User and must not count twice.
	got, ok := hostCPUPercent(prev, cur)
	require.True(t, ok)
	require.InDelta(t, 40, got, 1e-9)

	_, ok = hostCPUPercent(cur, cur)
	require.False(t, ok)
}

// fakeCgroup writes cgroup v2 files into a temporary directory.
type fakeCgroup struct {
	t    *testing.T
	root string
}

func newFakeCgroup(t *testing.T, files map[string]string) fakeCgroup {
	t.Helper()
	g := fakeCgroup{t: t, root: t.TempDir()}
	for name, content := range files {
		g.write(name, content)
	}
	return g
}

func (g fakeCgroup) write(name, content string) {
	g.t.Helper()
	require.NoError(g.t, os.WriteFile(filepath.Join(g.root, name), []byte(content), 0o644))
}

func (g fakeCgroup) remove(name string) {
	g.t.Helper()
	require.NoError(g.t, os.Remove(filepath.Join(g.root, name)))
}

// probe returns a cgroupProbe on g whose clock advances by one second per measurement, on a host
// with 4 CPUs and 16 GiB.
func (g fakeCgroup) probe() *cgroupProbe {
	p := newCgroupProbe(g.root)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { now = now.Add(time.Second); return now }
	p.hostCPUs = func() float64 { return 4 }
	p.hostMemory = func() (uint64, error) { return 16 << 30, nil }
	return p
}

func usec(d time.Duration) string {
	return "usage_usec " + formatUint(uint64(d/time.Microsecond)) + "\n"
}

func formatUint(n uint64) string { return strconv.FormatUint(n, 10) }

func TestCgroupProbe(t *testing.T) {
	t.Parallel()
	const gib = 1 << 30

	cases := []struct {
		name    string
		files   map[string]string
		used    time.Duration // CPU time used between the two samples (one second apart)
		cpu     float64
		mem     float64
		wantErr string
	}{
		{
			name: "quota of two CPUs and a memory limit",
			files: map[string]string{
				"cpu.max": "200000 100000", "memory.current": formatUint(gib), "memory.max": formatUint(4 * gib),
			},
			used: 500 * time.Millisecond, cpu: 25, mem: 25,
		},
		{
			name:  "no quota: the host's CPUs; no memory limit: the host's memory",
			files: map[string]string{"cpu.max": "max 100000", "memory.current": formatUint(4 * gib), "memory.max": "max"},
			used:  2 * time.Second, cpu: 50, mem: 25,
		},
		{
			name:  "quota above the host's CPUs counts as the host",
			files: map[string]string{"cpu.max": "800000 100000", "memory.current": formatUint(8 * gib)},
			used:  time.Second, cpu: 25, mem: 50,
		},
		{
			name:  "missing cpu.max and memory.max mean no limits",
			files: map[string]string{"memory.current": formatUint(2 * gib)},
			used:  4 * time.Second, cpu: 100, mem: 12.5,
		},
		{
			name: "reclaimable page cache is not counted",
			files: map[string]string{
				"memory.current": formatUint(3 * gib), "memory.max": formatUint(4 * gib),
				"memory.stat": "anon 1073741824\ninactive_file 2147483648\n",
			},
			mem: 25,
		},
		{
			name:    "missing memory.current",
			files:   map[string]string{"memory.max": "max"},
			wantErr: "memory.current",
		},
		{
			name:    "malformed cpu.max",
			files:   map[string]string{"cpu.max": "plenty", "memory.current": "1"},
			wantErr: "cpu.max",
		},
		{
			name:    "malformed memory.max",
			files:   map[string]string{"memory.current": "1", "memory.max": "lots"},
			wantErr: "memory.max",
		},
		{
			name:    "zero memory limit",
			files:   map[string]string{"memory.current": "1", "memory.max": "0"},
			wantErr: "memory limit is 0",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newFakeCgroup(t, tc.files)
			g.write("cpu.stat", usec(10*time.Second))
			p := g.probe()

			first, err := p.measure()
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.False(t, first.cpuOK, "one sample cannot give CPU use")
			require.InDelta(t, tc.mem, first.mem, 1e-9)

			g.write("cpu.stat", usec(10*time.Second+tc.used))
			second, err := p.measure()
			require.NoError(t, err)
			require.True(t, second.cpuOK)
			require.InDelta(t, tc.cpu, second.cpu, 1e-9)
			require.InDelta(t, tc.mem, second.mem, 1e-9)
		})
	}
}

func TestCgroupProbeFilesVanish(t *testing.T) {
	t.Parallel()
	g := newFakeCgroup(t, map[string]string{"cpu.stat": usec(0), "memory.current": "1"})
	p := g.probe()
	_, err := p.measure()
	require.NoError(t, err)

	g.remove("cpu.stat")
	_, err = p.measure()
	require.ErrorIs(t, err, fs.ErrNotExist)

	g.write("cpu.stat", "system_usec 1\n")
	_, err = p.measure()
	require.ErrorContains(t, err, "cpu.stat: no usage_usec")
}

func TestHostMemoryFailure(t *testing.T) {
	t.Parallel()
	g := newFakeCgroup(t, map[string]string{"cpu.stat": usec(0), "memory.current": "1", "memory.max": "max"})
	p := g.probe()
	p.hostMemory = func() (uint64, error) { return 0, errors.New("no meminfo") }
	_, err := p.measure()
	require.ErrorContains(t, err, "host memory: no meminfo")
}

func TestHasCgroupV2(t *testing.T) {
	t.Parallel()
	all := map[string]string{"cgroup.controllers": "cpu memory", "cpu.stat": usec(0), "memory.current": "1"}
	require.True(t, hasCgroupV2(newFakeCgroup(t, all).root))
	for name := range all {
		g := newFakeCgroup(t, all)
		g.remove(name)
		require.False(t, hasCgroupV2(g.root), "without %s", name)
	}
	require.False(t, hasCgroupV2(filepath.Join(t.TempDir(), "none")))
}

func TestHostProbe(t *testing.T) {
	t.Parallel()
	p := newHostProbe()
	first, err := p.measure()
	require.NoError(t, err)
	require.False(t, first.cpuOK)
	require.True(t, first.mem > 0 && first.mem <= 100, "memory %v", first.mem)

	// Burn a little CPU so the counters move between the two samples.
	deadline := time.Now().Add(50 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = n * n
	}
	second, err := p.measure()
	require.NoError(t, err)
	if second.cpuOK {
		require.True(t, second.cpu >= 0 && second.cpu <= 100, "cpu %v", second.cpu)
	}

	p.times = func() (cpu.TimesStat, error) { return cpu.TimesStat{}, errors.New("no /proc") }
	_, err = p.measure()
	require.ErrorContains(t, err, "cpu times: no /proc")
}
