//go:build unix

package procgroup

import (
	"errors"
	"os"
	"syscall"
)

// SysProcAttr returns the attributes a program is started with so that it leads a process group
// of its own, which its children and grandchildren inherit.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// Exists reports whether any process of the group can still be signalled. Zombies count until
// their parent reaps them; orphans are reaped by init, or by the runner when it runs as PID 1 or
// a subreaper and reaps its children.
func Exists(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// terminate sends SIGTERM to the group, and says os.ErrProcessDone when it is gone.
func terminate(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGTERM)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// kill sends SIGKILL to the group.
func kill(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}
