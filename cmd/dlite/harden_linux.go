package main

import "golang.org/x/sys/unix"

// harden makes the runner process non-dumpable. Its /proc files then belong to root, so the
// scripts it runs, which run as the same user, cannot read its environment (the account secret,
// a token) from /proc/<pid>/environ, nor ptrace it. Scripts started by the runner are dumpable
// again (execve resets the flag), so nothing changes for them.
func harden() error { return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }
