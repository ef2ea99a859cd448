// Package manager declares what the dlite runtime needs of a task manager: register, heartbeat,
// poll, acquire and report, in terms of the runtime's own types. The Harness delegate API
// (internal/harness) is one implementation; another protocol plugs in by implementing Manager,
// without touching the poller, the pool or the reporter.
package manager
