package docker

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/dlite-dev/dlite/internal/engine"
)

// logDrain bounds how long Wait waits, after the container has stopped, for the rest of its
// output: the daemon ends a followed log stream when the container stops, and this only guards
// against a daemon that does not.
const logDrain = 10 * time.Second

// process is a step's container. Its log stream, when it has one, outlives the context of the
// Start that opened it and ends with the container.
type process struct {
	b    *Backend
	id   string
	name string

	// logsDone is closed when the copy of the container's output has ended; nil without one.
	logsDone   chan struct{}
	cancelLogs context.CancelFunc
}

var _ engine.Process = (*process)(nil)

// follow copies the container's output, stdout and stderr demultiplexed, into out: from since
// when it is set (a joined step shows only what comes next), else from the container's start.
func (b *Backend) follow(ctx context.Context, id, name string, since time.Time, out io.Writer) (*process, error) {
	logCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	rc, err := b.cli.ContainerLogs(logCtx, id, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("docker: follow the output of container %s: %w", name, err)
	}
	p := &process{b: b, id: id, name: name, logsDone: make(chan struct{}), cancelLogs: cancel}
	go func() {
		defer close(p.logsDone)
		defer rc.Close()
		if _, err := stdcopy.StdCopy(out, out, rc); err != nil && logCtx.Err() == nil {
			b.log.Warn("step output stream ended early", "container", name, "error", err)
		}
	}()
	return p, nil
}

// Wait waits until the container is not running, then for the rest of its output, and answers
// its exit code and whether it was killed for lack of memory. It returns early with ctx's error;
// the container runs on.
func (p *process) Wait(ctx context.Context) (engine.Exit, error) {
	waitC, errC := p.b.cli.ContainerWait(ctx, p.id, container.WaitConditionNotRunning)
	// Both channels are read from only here, and one of them always fires (a cancelled ctx ends
	// the request), so the client's goroutine never blocks on an unread result.
	select {
	case <-waitC:
	case err := <-errC:
		if ctx.Err() != nil {
			return engine.Exit{}, ctx.Err()
		}
		if cerrdefs.IsNotFound(err) {
			p.stopLogs()
			return engine.Exit{}, fmt.Errorf("docker: wait for container %s: it was removed: %w", p.name, err)
		}
		return engine.Exit{}, fmt.Errorf("docker: wait for container %s: %w", p.name, err)
	}
	if err := p.drainLogs(ctx); err != nil {
		return engine.Exit{}, err
	}
	c, err := p.b.cli.ContainerInspect(ctx, p.id)
	if err != nil {
		if ctx.Err() != nil {
			return engine.Exit{}, ctx.Err()
		}
		return engine.Exit{}, fmt.Errorf("docker: inspect container %s after it stopped: %w", p.name, err)
	}
	if c.State == nil {
		return engine.Exit{}, fmt.Errorf("docker: inspect container %s after it stopped: no state", p.name)
	}
	return engine.Exit{Code: c.State.ExitCode, OOMKilled: c.State.OOMKilled}, nil
}

// drainLogs waits for the output copy to reach the end of the stream.
func (p *process) drainLogs(ctx context.Context) error {
	if p.logsDone == nil {
		return nil
	}
	timer := time.NewTimer(logDrain)
	defer timer.Stop()
	select {
	case <-p.logsDone:
	case <-timer.C:
		p.b.log.Warn("step output stream did not end with the container; closing it", "container", p.name)
		p.stopLogs()
	case <-ctx.Done():
		return ctx.Err()
	}
	p.cancelLogs()
	return nil
}

// stopLogs ends the output copy and waits for it.
func (p *process) stopLogs() {
	if p.logsDone == nil {
		return
	}
	p.cancelLogs()
	<-p.logsDone
}

// Stop stops the container: SIGTERM (or the image's stop signal), then SIGKILL once grace has
// passed, rounded up to whole seconds as the daemon counts them. A container already stopped or
// gone is not an error.
func (p *process) Stop(ctx context.Context, grace time.Duration) error {
	secs := 0
	if grace > 0 {
		secs = int(math.Ceil(grace.Seconds()))
	}
	if err := p.b.cli.ContainerStop(ctx, p.id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: stop container %s: %w", p.name, err)
	}
	return nil
}
