//go:build !linux

package spool

import "os"

// syncData flushes f to stable storage (F_FULLFSYNC on darwin, FlushFileBuffers on windows).
func syncData(f *os.File) error { return f.Sync() }
