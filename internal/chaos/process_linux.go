package chaos

import "syscall"

// sysProcAttr has the kernel kill a started binary when the suite dies, so no runner outlives a
// crashed or interrupted suite.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
