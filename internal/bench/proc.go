package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, which Linux fixes at 100
// for user space on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or parentheses itself, so
	// the numbered fields are counted from the last ')'.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 || end+2 > len(b) {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(b[end+2:]))
	// fields[0] is field 3 (state); utime is field 14 and stime field 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(fields))
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat utime: %w", pid, err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat stime: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// Memory is a process's resident memory, from /proc/<pid>/status.
type Memory struct {
	// RSS is the resident set size now (VmRSS).
	RSS int64
	// Peak is the largest resident set size so far (VmHWM).
	Peak int64
}

// ProcMemory returns a process's resident memory in bytes.
func ProcMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		*dst = kb << 10
	}
	return m, nil
}

// cpuSample is a process's CPU time at one moment.
type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// cpuTrace samples a process's CPU time at a fixed period, so the CPU used between two moments
// known only afterwards (the first acquire, the last result) can be read off the trace.
type cpuTrace struct {
	pid     int
	mu      sync.Mutex
	samples []cpuSample
	done    chan struct{}
	stop    context.CancelFunc
}

func traceCPU(pid int, period time.Duration) *cpuTrace {
	ctx, stop := context.WithCancel(context.Background())
	t := &cpuTrace{pid: pid, done: make(chan struct{}), stop: stop}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			t.sample()
			select {
			case <-ctx.Done():
				t.sample()
				return
			case <-tick.C:
			}
		}
	}()
	return t
}

func (t *cpuTrace) sample() {
	cpu, err := ProcCPU(t.pid)
	if err != nil {
		return // the process is gone; its last sample stands
	}
	t.mu.Lock()
	t.samples = append(t.samples, cpuSample{at: time.Now(), cpu: cpu})
	t.mu.Unlock()
}

// Close stops sampling after one last sample.
func (t *cpuTrace) Close() {
	t.stop()
	<-t.done
}

// at returns the CPU time at a moment, interpolated between the samples around it.
func (t *cpuTrace) at(when time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.samples
	if len(s) == 0 {
		return 0
	}
	if !when.After(s[0].at) {
		return s[0].cpu
	}
	for i := 1; i < len(s); i++ {
		if when.After(s[i].at) {
			continue
		}
		a, b := s[i-1], s[i]
		span := b.at.Sub(a.at)
		if span <= 0 {
			return b.cpu
		}
		frac := float64(when.Sub(a.at)) / float64(span)
		return a.cpu + time.Duration(frac*float64(b.cpu-a.cpu))
	}
	return s[len(s)-1].cpu
}

// between returns the CPU time used from one moment to another.
func (t *cpuTrace) between(from, to time.Time) time.Duration { return t.at(to) - t.at(from) }
