// Package bench measures what a dlite runner costs against a mock manager on loopback: task
// throughput, dispatch latency, CPU time per task and memory, each next to a floor, a minimal
// client that makes the same manager calls per task with nothing else around them. The driver
// starts every process it measures (the mock manager, the real dlite binary, the floor) as a
// separate process, reads their CPU time and memory from /proc, and renders a table and a JSON
// document; `make bench` runs it through cmd/dlite-bench.
package bench
