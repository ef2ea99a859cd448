package dlite

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// RunWithSignals runs r until ctx ends or the process is told to stop. The first SIGINT or
// SIGTERM stops taking work and lets running tasks finish within grace; a second one, or the end
// of grace, cancels the tasks still running, and each is reported as cancelled by the shutdown.
// It returns when the runner has stopped.
func RunWithSignals(ctx context.Context, r *Runner, grace time.Duration) error {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	done := make(chan struct{})
	defer close(done)
	go func() {
		var sig os.Signal
		select {
		case sig = <-signals:
		case <-done:
			return
		}
		r.logger.Info("stop signal received: taking no more work, draining running tasks",
			"signal", sig.String(), "grace", grace, "hint", "send the signal again to cancel running tasks now")
		drain, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		go func() {
			select {
			case sig := <-signals:
				r.logger.Warn("second stop signal: cancelling running tasks", "signal", sig.String())
				cancel()
			case <-drain.Done():
			case <-done:
			}
		}()
		_ = r.Shutdown(drain)
	}()
	return r.Run(ctx)
}
