//go:build !unix

package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// SysProcAttr returns the attributes a program is started with. Without Unix process groups
// (Windows) there is nothing to set: a Group then stands for the program alone.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// Exists reports false: without process groups the processes a program started cannot be found,
// so Stop has nothing to wait for once the program itself has ended.
func Exists(int) bool { return false }

// terminate kills the program at once: Windows has no SIGTERM to ask it first. The processes it
// started are not reached.
func terminate(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return os.ErrProcessDone
	}
	defer p.Release()
	if err := p.Kill(); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return os.ErrProcessDone
		}
		return err
	}
	return nil
}

// kill ends the program, as terminate does.
func kill(pid int) { _ = terminate(pid) }
