// Package tasks is what a task handler sees of the dlite runtime: the envelope of the task it runs
// (id, type, timeout, logging, delegate) and a logger for it, both carried by the handler's context,
// so a handler generated from a spec gets them without parsing the manager's JSON.
//
// The built-in task types live in the packages below this one: shell (SHELL_SCRIPT_TASK),
// httptask (HTTP_TASK), sleep (SLEEP_TASK) and builtin, which serves them all through the
// generated task server. Package ci serves the Harness CI stage task types on the stage engine.
package tasks
