//go:build !windows

package spool

import "os"

// syncDir makes the entries of dir (files created, renamed or deleted in it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
