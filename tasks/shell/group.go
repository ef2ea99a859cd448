package shell

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// groupPollInterval is how often stop looks whether a stopped group is gone.
const groupPollInterval = 20 * time.Millisecond

// group signals the process group a script runs in. Its id is the shell's pid: the shell is
// started with Setpgid, so it leads a new group that its children and grandchildren inherit.
type group struct {
	mu     sync.Mutex
	termAt time.Time // when SIGTERM first reached the group; zero until then
}

// terminate sends SIGTERM to the whole group. It is the command's Cancel function, so it
// returns os.ErrProcessDone when the group is already gone: the script then finished on its own.
func (g *group) terminate(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGTERM)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	if g.termAt.IsZero() {
		g.termAt = time.Now()
	}
	g.mu.Unlock()
	return nil
}

// terminated reports whether SIGTERM was sent to the group, that is whether the script was
// interrupted rather than ending on its own.
func (g *group) terminated() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.termAt.IsZero()
}

// stop ends whatever is left of the group after the shell itself has exited, such as background
// jobs the script did not wait for: SIGTERM, then SIGKILL once grace has passed since the first
// SIGTERM. It returns once the group is empty or has been sent SIGKILL.
//
// The shell has been reaped by then, so the group id is only kept from reuse by the members that
// remain; stop signals the group only while it sees members, which keeps the window in which the
// id could belong to someone else down to a single poll interval.
func (g *group) stop(pgid int, grace time.Duration) {
	if !groupExists(pgid) {
		return
	}
	if err := g.terminate(pgid); err != nil {
		return
	}
	g.mu.Lock()
	deadline := g.termAt.Add(grace)
	g.mu.Unlock()
	for time.Now().Before(deadline) {
		if !groupExists(pgid) {
			return
		}
		time.Sleep(groupPollInterval)
	}
	if groupExists(pgid) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// groupExists reports whether any process of the group can still be signalled. Zombies count
// until their parent reaps them; orphans are reaped by init, or by the runner when it runs as
// PID 1 or a subreaper and reaps its children.
func groupExists(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}
