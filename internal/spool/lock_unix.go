//go:build unix && !aix && !solaris

package spool

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f without waiting; the lock goes with the descriptor, so
// closing f or the death of the process releases it.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
