//go:build !linux

package chaos

import "syscall"

// sysProcAttr is empty where the kernel cannot tie a child's life to its parent's; the suite
// stops its binaries itself.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
