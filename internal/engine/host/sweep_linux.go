package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// sweepPoll is how often a sweep looks whether the processes it signalled are gone.
const sweepPoll = 20 * time.Millisecond

// labels select the processes of a stage, or of one step of it, started by this runner.
type labels struct{ stage, step string }

// sweep stops the processes carrying the labels that are not this backend's children: what a
// runner process that died left running. It finds them by the label variables in
// /proc/<pid>/environ, sends SIGTERM to their process groups, SIGKILL after the grace period,
// and returns once none is left (zombies do not count: their environment is gone).
func (b *Backend) sweep(ctx context.Context, l labels) error {
	pids := b.labelled(l)
	if len(pids) == 0 {
		return nil
	}
	b.log.Info("stopping processes a previous runner process left behind", "stage", l.stage, "step", l.step, "pids", pids)
	signalAll(pids, syscall.SIGTERM)
	deadline := time.Now().Add(b.opts.KillGrace)
	for {
		t := time.NewTimer(sweepPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("processes %v still run: %w", pids, context.Cause(ctx))
		case <-t.C:
		}
		pids = b.labelled(l)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			// Processes started since the last signal get one more grace period.
			signalAll(pids, syscall.SIGKILL)
			deadline = time.Now().Add(b.opts.KillGrace)
		}
	}
}

// signalAll signals each process and its group, but never the runner's own group.
func signalAll(pids []int, sig syscall.Signal) {
	own := syscall.Getpgrp()
	for _, pid := range pids {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid != own && pgid > 1 {
			_ = syscall.Kill(-pgid, sig)
		}
		_ = syscall.Kill(pid, sig)
	}
}

// labelled lists the processes whose environment carries the labels and this runner's id.
func (b *Backend) labelled(l labels) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.log.Warn("cannot list processes to find a stage's leftovers", "err", err)
		return nil
	}
	want := [][]byte{
		[]byte(EnvLabelStage + "=" + l.stage),
		[]byte(EnvLabelRunner + "=" + b.opts.RunnerID),
	}
	if l.step != "" {
		want = append(want, []byte(EnvLabelStep+"="+l.step))
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
				b.log.Debug("cannot read a process's environment", "pid", pid, "err", err)
			}
			continue
		}
		if hasAll(env, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func hasAll(env []byte, want [][]byte) bool {
	found := 0
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		for _, w := range want {
			if bytes.Equal(kv, w) {
				found++
			}
		}
	}
	return found == len(want)
}
