// Package shell runs SHELL_SCRIPT_TASK: a script given in the task's data, executed by sh or bash
// in its own process group. The group is the unit of cleanup: when the task is cancelled, times
// out or the runner shuts down, every process in it gets SIGTERM and, after a grace period,
// SIGKILL, and whatever the script left behind when it exits is stopped the same way. Only the
// last bytes of its combined output are kept, so a chatty script cannot exhaust the runner's
// memory, and requested shell variables are read back from the shell itself as it exits. Scripts
// never see the runner's own settings (variables named DLITE_* or DRONE_DELEGATE_*), which carry
// its credentials. The package is meant for Unix-like systems; on Windows (with a sh or bash
// installed) a script runs, but cancelling it kills only the shell, not what the script started.
package shell
