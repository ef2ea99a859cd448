// Package sleep implements SLEEP_TASK: wait for the given time without starting a process, then
// succeed. It exercises a runner end to end (a no-op with 0 milliseconds) and measures what the
// runner itself costs per task and per waiting task.
package sleep
