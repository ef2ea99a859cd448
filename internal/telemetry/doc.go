// Package telemetry is what a runner knows about itself for the people who operate it: the
// Recorder hears the runtime's observer hooks (tasks started and finished, polls, acquires,
// deliveries, manager calls, admission holds) and keeps Prometheus metrics and the recent task
// history, and the Monitor reads the live runtime (registration, phase, slots, spool) to answer
// readiness and to build the status page's snapshot. Hooks only touch atomic counters and a short
// mutex, so observing never slows or blocks the work it observes.
package telemetry
