package procgroup

import (
	"sync"
	"time"
)

// pollInterval is how often Stop looks whether a stopped group is gone.
const pollInterval = 20 * time.Millisecond

// Group signals the process group a program runs in. Its id is the program's pid: the program is
// started with Setpgid, so it leads a new group. The zero value is ready to use.
type Group struct {
	mu     sync.Mutex
	termAt time.Time // when SIGTERM first reached the group; zero until then
}

// Terminate sends SIGTERM to the whole group. It suits an exec.Cmd's Cancel function: it returns
// os.ErrProcessDone when the group is already gone, that is when the program finished on its own.
func (g *Group) Terminate(pgid int) error {
	if err := terminate(pgid); err != nil {
		return err
	}
	g.mu.Lock()
	if g.termAt.IsZero() {
		g.termAt = time.Now()
	}
	g.mu.Unlock()
	return nil
}

// Terminated reports whether SIGTERM was sent to the group, that is whether the program was
// interrupted rather than ending on its own.
func (g *Group) Terminated() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.termAt.IsZero()
}

// Stop ends whatever is left of the group: SIGTERM, then SIGKILL once grace has passed since the
// first SIGTERM. It returns once the group is empty or has been sent SIGKILL.
//
// When the leader has been reaped already, the group id is only kept from reuse by the members
// that remain; Stop signals the group only while it sees members, which keeps the window in which
// the id could belong to someone else down to a single poll interval.
func (g *Group) Stop(pgid int, grace time.Duration) {
	if !Exists(pgid) {
		return
	}
	if err := g.Terminate(pgid); err != nil {
		return
	}
	g.mu.Lock()
	deadline := g.termAt.Add(grace)
	g.mu.Unlock()
	for time.Now().Before(deadline) {
		if !Exists(pgid) {
			return
		}
		time.Sleep(pollInterval)
	}
	if Exists(pgid) {
		kill(pgid)
	}
}
