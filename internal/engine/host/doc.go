// Package host is the stage engine's host backend: it runs steps that have no image as
// processes of the runner's own machine. Each step runs in a process group of its own, so
// stopping it (a timeout, an abort, a cleanup) reaches every process it started: SIGTERM to the
// group, SIGKILL after a grace period; whatever a step leaves running in its group when it exits
// is stopped the same way. A step sees only the environment the engine assembled for it plus a
// few variables of the runner's own (BaseEnv: PATH, HOME, ...), never the runner's settings and
// credentials, and three label variables (IO_DLITE_STAGE, IO_DLITE_RUNNER, IO_DLITE_STEP) that
// every process it starts inherits. The labels are the host's counterpart of container labels:
// cleanup finds a stage's processes through them in /proc even when the runner process that
// started them was killed. Running processes are kept only as live handles of this process, for
// joining and stopping; nothing about a stage is stored here. The package runs on Unix-like
// systems; finding leftovers of a dead runner needs Linux.
package host
