// Package dlite builds task runners for the Harness manager: a runner registers, polls for tasks
// only when it has a free slot, runs each through a typed handler generated from an OpenAPI task
// spec, and delivers every result, spooled to disk until the manager has it.
//
// A runner is assembled from a Config (LoadConfig reads it from flags and the environment), one or
// more generated task servers (TaskServer) and, optionally, plain http.Handlers written for the
// old dlite library. The supported task types, the validation of task data and the dispatch to
// handlers all come from the task specs, so nothing is listed twice.
package dlite
