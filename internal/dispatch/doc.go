// Package dispatch runs one acquired task through the generated task server: it checks the task's
// data against the task spec, serves it in-process to the typed handler the spec's generated code
// registered, and turns what came back into an Outcome (OK, FAILED or TIMEOUT, an error, the output).
//
// Every operation of a task spec is `POST /tasks/<TASK_TYPE>`, so the spec alone says which task
// types a runner supports; plain http.Handler task handlers written for the old dlite library are
// served beside the generated ones.
package dispatch
