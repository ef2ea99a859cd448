package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The version and commit the test binary is stamped with, as `make build` stamps a release.
const (
	testVersion = "v0.0.0-e2e"
	testCommit  = "0123456789abcdef"
)

// binary is the dlite binary the tests run, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dlite-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dlite")
	build := exec.Command("go", "build", "-o", binary,
		"-ldflags", "-X main.version="+testVersion+" -X main.commit="+testCommit, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build dlite:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	// VerifyTestMain ends the process, so the binary's directory goes in its cleanup: a deferred
	// removal would never run.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// waitFor bounds every wait; it only keeps a broken binary from hanging the test run.
const waitFor = 60 * time.Second

// output collects what a process writes and lets a test wait for a line.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// line waits for a line holding substr and returns it.
func (o *output) line(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		o.mu.Lock()
		text, changed := o.buf.String(), o.changed
		o.mu.Unlock()
		for l := range strings.Lines(text) {
			if strings.Contains(l, substr) {
				return strings.TrimRight(l, "\n")
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no line with %q in:\n%s", substr, text)
		}
	}
}

// process is a running dlite binary.
type process struct {
	cmd    *exec.Cmd
	stdout *output
	stderr *output
	exited chan struct{}
	code   int
}

// startBinary runs the dlite binary with exactly env as its environment. The process is killed
// when the test ends if it is still running.
func startBinary(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	return startProcess(t, cmd)
}

// startProcess starts cmd, collecting its output, and kills it when the test ends if it is still
// running; a failed test logs what it wrote.
func startProcess(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, stdout: newOutput(), stderr: newOutput(), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() {
		defer close(p.exited)
		_ = p.cmd.Wait() // the exit code says how it ended; -1 when a signal killed it
		p.code = p.cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %s: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(waitFor):
		t.Fatalf("dlite did not exit; stderr:\n%s", p.stderr)
		return 0
	}
}

// baseEnv is the environment of every process the tests start: a PATH and a HOME of its own,
// nothing inherited from the test's environment.
func baseEnv(t *testing.T, vars ...string) []string {
	t.Helper()
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, vars...)
}
