// Package executor runs acquired tasks in the pool's slots: it keeps the table of tasks claimed and
// running on this runner (so no task is acquired or run twice at once), runs each through the
// dispatcher with a context it can cancel for an abort or a shutdown, and hands every outcome to
// the reporter.
package executor
