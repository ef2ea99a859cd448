package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultInterval   = time.Second
	DefaultCgroupRoot = "/sys/fs/cgroup"
)

// Sources of a measurement, as reported in Usage.Source.
const (
	// SourceCgroup: use is measured against the runner's cgroup v2 limits.
	SourceCgroup = "cgroup"
	// SourceHost: use is measured against the whole host.
	SourceHost = "host"
)

// ErrAlreadyRunning is returned by Run when another Run of the same Controller has not returned.
var ErrAlreadyRunning = errors.New("admission: sampler already running")

// Options configure a Controller.
type Options struct {
	// MaxCPUPercent is the CPU use, in percent of what the runner may use, at or above which
	// Admit refuses work. Zero (or less) disables the CPU check.
	MaxCPUPercent float64
	// MaxMemoryPercent is the same ceiling for memory.
	MaxMemoryPercent float64
	// Interval is the time between two samples; DefaultInterval when zero.
	Interval time.Duration
	// CgroupRoot is where the runner's cgroup v2 files are read; DefaultCgroupRoot when empty.
	CgroupRoot string
	// Logger receives the holding-back transitions and measurement failures; nothing is logged
	// when nil.
	Logger *slog.Logger
}

// Usage is the latest measurement and the verdict drawn from it.
type Usage struct {
	// CPUPercent is CPU use in percent of the CPUs the runner may use. It stays 0 until two
	// samples have been taken, since it is computed from their difference.
	CPUPercent float64
	// MemoryPercent is memory use in percent of the memory the runner may use.
	MemoryPercent float64
	// Source is SourceCgroup or SourceHost; empty when both ceilings are disabled.
	Source string
	// Holding reports whether Admit refuses work.
	Holding bool
	// SampledAt is when the measurement was taken; zero before the first one.
	SampledAt time.Time
}

// Controller answers Admit from the verdict of its latest sample. Its methods are safe for
// concurrent use.
type Controller struct {
	maxCPU, maxMem float64
	interval       time.Duration
	log            *slog.Logger
	probe          probe

	state   atomic.Pointer[state]
	running atomic.Bool
	// failing is touched only by the sampling goroutine; it keeps a persistent measurement
	// failure from being logged on every sample.
	failing bool
}

// state is one published verdict. It is replaced whole, never modified, so Admit and Usage read
// it with a single atomic load.
type state struct {
	usage  Usage
	reason string
}

// New returns a Controller for opts. When a ceiling is set it looks for cgroup v2 files under
// opts.CgroupRoot to choose what to measure; with both ceilings disabled it touches nothing.
func New(opts Options) *Controller {
	c := newController(opts, nil)
	if c.enabled() {
		root := opts.CgroupRoot
		if root == "" {
			root = DefaultCgroupRoot
		}
		if hasCgroupV2(root) {
			c.probe = newCgroupProbe(root)
		} else {
			c.probe = newHostProbe()
		}
		c.state.Store(&state{usage: Usage{Source: c.probe.source()}})
	}
	return c
}

func newController(opts Options, p probe) *Controller {
	c := &Controller{
		maxCPU:   max(opts.MaxCPUPercent, 0),
		maxMem:   max(opts.MaxMemoryPercent, 0),
		interval: opts.Interval,
		log:      opts.Logger,
		probe:    p,
	}
	if c.interval <= 0 {
		c.interval = DefaultInterval
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	initial := &state{}
	if p != nil {
		initial.usage.Source = p.source()
	}
	c.state.Store(initial)
	return c
}

func (c *Controller) enabled() bool { return c.maxCPU > 0 || c.maxMem > 0 }

// Admit reports whether the runner may take another task now and, when it may not, why (e.g.
// "memory 93.1% ≥ ceiling 90%"). It only reads the latest verdict, so it is cheap enough to call
// before every poll. Before the first sample, and always when both ceilings are disabled, it
// admits.
func (c *Controller) Admit() (ok bool, reason string) {
	s := c.state.Load()
	if !s.usage.Holding {
		return true, ""
	}
	return false, s.reason
}

// Usage returns the latest measurement, for metrics and the status page.
func (c *Controller) Usage() Usage { return c.state.Load().usage }

// Run samples every Interval until ctx is done, then returns ctx.Err(). It takes the first sample
// immediately, so a machine already over a ceiling holds back from the start. With both ceilings
// disabled it returns nil at once without sampling. When Run returns, Admit admits again: a verdict
// that nobody refreshes must not stop the runner for good.
func (c *Controller) Run(ctx context.Context) error {
	if !c.enabled() {
		return nil
	}
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	defer c.release()

	c.sample()
	ticker := time.NewTicker(c.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
			c.sample()
		}
	}
}

// sample measures once, publishes the verdict and logs a change of it.
func (c *Controller) sample() {
	prev := c.state.Load()
	m, err := c.probe.measure()
	if err != nil {
		// Failing open: admission protects the machine, and a runner that stops working because
		// it cannot read a counter would be a worse outcome than one that works unchecked.
		if !c.failing {
			c.failing = true
			c.log.Warn("cannot measure resource use; admitting work unchecked until it recovers",
				"source", c.probe.source(), "error", err)
		}
		next := *prev
		next.usage.Holding, next.reason = false, ""
		c.state.Store(&next)
		return
	}
	if c.failing {
		c.failing = false
		c.log.Info("resource measurement recovered", "source", c.probe.source())
	}

	var reasons []string
	if c.maxCPU > 0 && m.cpuOK && m.cpu >= c.maxCPU {
		reasons = append(reasons, fmt.Sprintf("cpu %.1f%% ≥ ceiling %s%%", m.cpu, formatPercent(c.maxCPU)))
	}
	if c.maxMem > 0 && m.mem >= c.maxMem {
		reasons = append(reasons, fmt.Sprintf("memory %.1f%% ≥ ceiling %s%%", m.mem, formatPercent(c.maxMem)))
	}
	next := &state{
		usage: Usage{
			CPUPercent:    m.cpu,
			MemoryPercent: m.mem,
			Source:        c.probe.source(),
			Holding:       len(reasons) > 0,
			SampledAt:     time.Now(),
		},
		reason: strings.Join(reasons, ", "),
	}
	c.state.Store(next)

	attrs := []any{"cpu_percent", round1(m.cpu), "memory_percent", round1(m.mem), "source", c.probe.source()}
	switch {
	case next.usage.Holding && !prev.usage.Holding:
		c.log.Warn("holding back: "+next.reason, attrs...)
	case !next.usage.Holding && prev.usage.Holding:
		c.log.Info("no longer holding back", attrs...)
	}
}

// release publishes an admitting verdict, keeping the last measurement.
func (c *Controller) release() {
	next := *c.state.Load()
	if next.usage.Holding {
		c.log.Info("no longer holding back: resource sampling stopped")
	}
	next.usage.Holding, next.reason = false, ""
	c.state.Store(&next)
}

func formatPercent(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

func round1(p float64) float64 { return math.Round(p*10) / 10 }
