// Package chaos checks that dlite runners lose nothing and run nothing twice when things go
// wrong. Run drives real dlite processes against the mock manager while the manager fails calls,
// resets connections, answers slowly and loses answers, and while a runner is killed with SIGKILL
// and restarted; it then counts, per task, the results the manager recorded and the executions
// the runners logged. The Proxy and Process types are the building blocks, shared with the
// end-to-end reliability tests: a fault-injecting proxy in front of a manager, and a dlite binary
// run as a child process with its output captured.
package chaos
