// Package builtin serves dlite's built-in task types, SHELL_SCRIPT_TASK (package shell),
// HTTP_TASK (package httptask) and SLEEP_TASK (package sleep), through the server generated from openapi/tasks.yaml: Handlers
// implements its strict interface, Register mounts it on an echo router at POST /tasks/<TYPE>,
// and ProviderSet gives the runner a ready *Handlers together with the cleanup that closes its
// idle HTTP connections.
package builtin
