package admission

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
)

// probe measures how busy the machine is. Implementations keep what they need between calls
// (CPU use is a difference of two counters); measure is called from one goroutine at a time.
type probe interface {
	source() string
	measure() (measurement, error)
}

// measurement is one sample, in percent of what the runner may use.
type measurement struct {
	cpu float64
	// cpuOK is false on the first sample, when there is no earlier counter to subtract.
	cpuOK bool
	mem   float64
}

// hasCgroupV2 reports whether root is a cgroup v2 directory whose CPU and memory controllers are
// usable. The root cgroup of a host has cgroup.controllers but no memory.current; there the
// host's own numbers are the better measure.
func hasCgroupV2(root string) bool {
	for _, name := range []string{"cgroup.controllers", "cpu.stat", "memory.current"} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			return false
		}
	}
	return true
}

// cgroupProbe measures against the limits of a cgroup v2 directory.
type cgroupProbe struct {
	root     string
	now      func() time.Time
	hostCPUs func() float64
	// hostMemory returns the host's total memory, the limit when memory.max is "max".
	hostMemory func() (uint64, error)

	prevUsage time.Duration
	prevAt    time.Time
	hasPrev   bool
}

func newCgroupProbe(root string) *cgroupProbe {
	return &cgroupProbe{
		root: root,
		now:  time.Now,
		// NumCPU honours the CPU affinity mask, so a cpuset limit is respected too.
		hostCPUs: func() float64 { return float64(runtime.NumCPU()) },
		hostMemory: func() (uint64, error) {
			v, err := mem.VirtualMemory()
			if err != nil {
				return 0, err
			}
			return v.Total, nil
		},
	}
}

func (p *cgroupProbe) source() string { return SourceCgroup }

func (p *cgroupProbe) measure() (measurement, error) {
	var m measurement
	stat, err := p.read("cpu.stat")
	if err != nil {
		return m, err
	}
	usage, err := parseCPUUsage(stat)
	if err != nil {
		return m, fmt.Errorf("cpu.stat: %w", err)
	}
	now := p.now()
	cpus, err := p.allowedCPUs()
	if err != nil {
		return m, err
	}
	if p.hasPrev {
		m.cpu, m.cpuOK = cgroupCPUPercent(p.prevUsage, usage, now.Sub(p.prevAt), cpus)
	}
	p.prevUsage, p.prevAt, p.hasPrev = usage, now, true

	m.mem, err = p.memoryPercent()
	return m, err
}

// allowedCPUs is the CPU quota in CPUs, or the host's CPU count when there is none or it is
// larger.
func (p *cgroupProbe) allowedCPUs() (float64, error) {
	host := p.hostCPUs()
	raw, err := p.read("cpu.max")
	if errors.Is(err, fs.ErrNotExist) {
		return host, nil
	}
	if err != nil {
		return 0, err
	}
	quota, limited, err := parseCPUMax(raw)
	if err != nil {
		return 0, fmt.Errorf("cpu.max: %w", err)
	}
	if limited && quota < host {
		return quota, nil
	}
	return host, nil
}

func (p *cgroupProbe) memoryPercent() (float64, error) {
	raw, err := p.read("memory.current")
	if err != nil {
		return 0, err
	}
	current, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory.current: %q is not a byte count", raw)
	}
	// The page cache the kernel can drop at once is not pressure: without this, a runner that
	// writes files would look full and hold back while the kernel would happily make room.
	if stat, err := p.read("memory.stat"); err == nil {
		if inactive, ok := statValue(stat, "inactive_file"); ok && inactive <= current {
			current -= inactive
		}
	}

	limit, limited := uint64(0), false
	raw, err = p.read("memory.max")
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		if limit, limited, err = parseMemoryMax(raw); err != nil {
			return 0, fmt.Errorf("memory.max: %w", err)
		}
	}
	if !limited {
		if limit, err = p.hostMemory(); err != nil {
			return 0, fmt.Errorf("host memory: %w", err)
		}
	}
	if limit == 0 {
		return 0, errors.New("memory limit is 0 bytes")
	}
	return clampPercent(float64(current) / float64(limit) * 100), nil
}

func (p *cgroupProbe) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.root, name))
	return strings.TrimSpace(string(b)), err
}

// parseCPUMax reads cpu.max, "$QUOTA $PERIOD" in microseconds or "max $PERIOD", into the quota
// in CPUs. limited is false for "max".
func parseCPUMax(s string) (cpus float64, limited bool, err error) {
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields) > 2 {
		return 0, false, fmt.Errorf("want \"QUOTA PERIOD\", got %q", s)
	}
	if fields[0] == "max" {
		return 0, false, nil
	}
	quota, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("quota %q is not a number", fields[0])
	}
	// The kernel's default period, for a file that gives none.
	period := uint64(100000)
	if len(fields) == 2 {
		if period, err = strconv.ParseUint(fields[1], 10, 64); err != nil {
			return 0, false, fmt.Errorf("period %q is not a number", fields[1])
		}
	}
	if quota == 0 || period == 0 {
		return 0, false, fmt.Errorf("quota and period must be positive, got %q", s)
	}
	return float64(quota) / float64(period), true, nil
}

// parseCPUUsage reads the cumulative CPU time from cpu.stat's usage_usec line.
func parseCPUUsage(stat string) (time.Duration, error) {
	usec, ok := statValue(stat, "usage_usec")
	if !ok {
		return 0, errors.New("no usage_usec line")
	}
	if usec > math.MaxInt64/uint64(time.Microsecond) {
		return 0, fmt.Errorf("usage_usec %d out of range", usec)
	}
	return time.Duration(usec) * time.Microsecond, nil
}

// parseMemoryMax reads memory.max, a byte count or "max". limited is false for "max".
func parseMemoryMax(s string) (limit uint64, limited bool, err error) {
	if s == "max" {
		return 0, false, nil
	}
	limit, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%q is neither a byte count nor \"max\"", s)
	}
	return limit, true, nil
}

// statValue finds "name value" in a flat-keyed cgroup file such as cpu.stat or memory.stat.
func statValue(stat, name string) (uint64, bool) {
	sc := bufio.NewScanner(strings.NewReader(stat))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != name {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// cgroupCPUPercent is the CPU time used between two samples in percent of the time the allowed
// CPUs offered. ok is false when the samples cannot be compared (no time passed, no CPU).
func cgroupCPUPercent(prevUsage, usage, wall time.Duration, cpus float64) (pct float64, ok bool) {
	if wall <= 0 || cpus <= 0 {
		return 0, false
	}
	if usage < prevUsage {
		// The counter went back: a different cgroup, or a reset. Start over from this sample.
		return 0, false
	}
	return clampPercent(float64(usage-prevUsage) / (float64(wall) * cpus) * 100), true
}

// hostProbe measures the whole host with gopsutil.
type hostProbe struct {
	times      func() (cpu.TimesStat, error)
	memPercent func() (float64, error)

	prev    cpu.TimesStat
	hasPrev bool
}

func newHostProbe() *hostProbe {
	return &hostProbe{
		times: func() (cpu.TimesStat, error) {
			ts, err := cpu.Times(false)
			if err != nil {
				return cpu.TimesStat{}, err
			}
			if len(ts) == 0 {
				return cpu.TimesStat{}, errors.New("no CPU times reported")
			}
			return ts[0], nil
		},
		memPercent: func() (float64, error) {
			v, err := mem.VirtualMemory()
			if err != nil {
				return 0, err
			}
			return v.UsedPercent, nil
		},
	}
}

func (p *hostProbe) source() string { return SourceHost }

func (p *hostProbe) measure() (measurement, error) {
	var m measurement
	t, err := p.times()
	if err != nil {
		return m, fmt.Errorf("cpu times: %w", err)
	}
	if p.hasPrev {
		m.cpu, m.cpuOK = hostCPUPercent(p.prev, t)
	}
	p.prev, p.hasPrev = t, true

	pct, err := p.memPercent()
	if err != nil {
		return m, fmt.Errorf("memory: %w", err)
	}
	m.mem = clampPercent(pct)
	return m, nil
}

// hostCPUPercent is the share of CPU time spent busy between two samples of the host's counters.
// Guest time is left out because Linux already counts it in user time.
func hostCPUPercent(prev, cur cpu.TimesStat) (pct float64, ok bool) {
	busy := func(t cpu.TimesStat) float64 {
		return t.User + t.Nice + t.System + t.Irq + t.Softirq + t.Steal
	}
	total := func(t cpu.TimesStat) float64 { return busy(t) + t.Idle + t.Iowait }
	elapsed := total(cur) - total(prev)
	if elapsed <= 0 {
		return 0, false
	}
	return clampPercent((busy(cur) - busy(prev)) / elapsed * 100), true
}

func clampPercent(p float64) float64 { return min(max(p, 0), 100) }
