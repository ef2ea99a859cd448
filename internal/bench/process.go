package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dlite-dev/dlite/internal/retry"
)

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return net.Listen("tcp", addr)
}

// process is a child process the driver measures.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// startProcess starts argv with env, its standard error going to errPath. With cpu ≥ 0 the
// process runs pinned to that CPU: argv is started through this program's `pin` command, which
// sets the affinity of its only thread and then execs argv, so the pid stays that of argv and every
// thread argv ever creates inherits the affinity.
func startProcess(name, self string, cpu int, argv, env []string, errPath string) (*process, io.Reader, error) {
	if cpu >= 0 {
		argv = append([]string{self, "pin", strconv.Itoa(cpu), "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	stderr, err := os.Create(errPath)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stderr.Close()
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		stderr.Close()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
		stderr.Close()
	}()
	return p, stdout, nil
}

// stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// kill ends the process at once and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exited reports the process's exit when it is gone, for error messages.
func (p *process) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited", p.name)
		}
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return nil
	}
}

// readFirstLine returns the first line a process writes, or an error when it writes none in time.
func readFirstLine(r io.Reader, timeout time.Duration) (string, error) {
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			return "", errors.New("no output")
		}
		return strings.TrimSpace(l), nil
	case <-time.After(timeout):
		return "", errors.New("no output in time")
	}
}

// Pin runs argv pinned to one CPU: it locks itself to its thread, sets that thread's affinity and
// replaces the process with argv, whose threads all inherit the affinity. It returns only on
// failure.
func Pin(cpu int, argv []string) error {
	if len(argv) == 0 {
		return errors.New("pin: no command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return syscall.Exec(path, argv, os.Environ())
}

// waitFor calls check every period until it reports done, fails, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout, period time.Duration, what string, check func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := check()
		if err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s: not after %s", what, timeout)
		}
		if err := retry.Sleep(ctx, period); err != nil {
			return err
		}
	}
}
