package chaos

import (
	"errors"
	"fmt"
	"github.com/dlite-dev/dlite/internal/syncbuf"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

// Process is a dlite binary started by the suite, with its standard output and error captured
// together.
type Process struct {
	// Name says which runner this is in reports, such as "runner-1#2" (runner 1, second start).
	Name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// BaseEnv is the environment every started binary gets besides its own settings: enough to find
// a shell and a temporary directory, and none of the DLITE_ variables of the caller's
// environment, which would change what is tested.
func BaseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start starts bin with args and env (see BaseEnv) added to BaseEnv.
func Start(name, bin string, args []string, env map[string]string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = BaseEnv()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// A child of the runner that kept the output pipe open must not hold up Wait for long.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended; valid after Done.
func (p *Process) Err() error { return p.err }

// Output returns everything the process wrote so far.
func (p *Process) Output() []byte { return p.out.Bytes() }

// Kill sends SIGKILL and waits for the process to be gone: the crash of a runner.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM (a graceful stop) and waits up to timeout, then kills the process. It
// returns an error when the process had to be killed or exited with a failure.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.exitError()
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, timeout)
	}
}

func (p *Process) exitError() error {
	if p.err == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return fmt.Errorf("%s exited: %w", p.Name, p.err)
	}
	return fmt.Errorf("%s: %w", p.Name, p.err)
}
