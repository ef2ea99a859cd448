package spool

import (
	"os"
	"syscall"
)

// syncData flushes f's data, and the metadata needed to read it back (its size), to stable
// storage. fdatasync skips the timestamps fsync would also write, which saves a journal commit on
// most appends.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
