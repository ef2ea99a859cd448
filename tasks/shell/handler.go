package shell

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/procgroup"
	"github.com/dlite-dev/dlite/tasks"
)

// Defaults of the Handler's settings.
const (
	// DefaultKillGrace is how long a stopped script's processes get between SIGTERM and SIGKILL.
	DefaultKillGrace = 3 * time.Second
	// DefaultOutputLimit is how many bytes of a script's output are kept: the last 64 KiB, as
	// the task spec promises.
	DefaultOutputLimit = 64 << 10
)

// Handler runs SHELL_SCRIPT_TASK. The zero value is ready to use; its fields exist for
// deployments and tests that need other settings. A Handler is safe for concurrent use.
type Handler struct {
	// Shells maps a shell to the executable that runs it. A shell missing from the map is looked
	// up by name on the runner's PATH.
	Shells map[gentasks.ShellScriptDataShell]string
	// TempDir is where the temporary directories of a script (its working directory when the
	// task names none, and a private one holding the script) are created; os.TempDir() when
	// empty. Both are removed when the script ends.
	TempDir string
	// KillGrace is how long a script's process group has between SIGTERM and SIGKILL when it is
	// stopped; DefaultKillGrace when zero or negative.
	KillGrace time.Duration
	// OutputLimit is how many of the last bytes of a script's output are kept;
	// DefaultOutputLimit when zero or negative.
	OutputLimit int
	// Environ returns the environment scripts inherit before the runner's settings are removed
	// from it; os.Environ when nil.
	Environ func() []string
}

// Run runs the script in req and waits for it. The outcome is always a typed response: 200 with
// the output when the script exits with status 0; 400 when the data cannot be run as given; 422
// with the output when the script exits with another status, is killed, or cannot be started.
// When ctx is done, the script's process group is stopped (SIGTERM, then SIGKILL after
// KillGrace) and Run returns promptly with "killed: " and the context's cause. The error is
// reserved for bugs and is always nil today.
func (h *Handler) Run(ctx context.Context, req gentasks.ShellScriptTaskRequestObject) (gentasks.ShellScriptTaskResponseObject, error) {
	j, err := newJob(req.Body)
	if err != nil {
		return gentasks.ShellScriptTask400JSONResponse{
			BadTaskJSONResponse: gentasks.BadTaskJSONResponse{Message: err.Error()},
		}, nil
	}
	out, failure := h.execute(ctx, j)
	if failure != "" {
		return gentasks.ShellScriptTask422JSONResponse{Message: failure, Data: out}, nil
	}
	return gentasks.ShellScriptTask200JSONResponse(out), nil
}

// execute runs j and returns what it produced and, when it did not succeed, why.
func (h *Handler) execute(ctx context.Context, j job) (out gentasks.ShellScriptOutput, failure string) {
	out = gentasks.ShellScriptOutput{ExitCode: -1, OutputVars: map[string]string{}}
	log := tasks.Logger(ctx)

	// The script and the file its output variables go to live in a private directory of their
	// own, away from the working directory the script may clean up or list.
	ctl, err := os.MkdirTemp(h.TempDir, "dlite-shell-")
	if err != nil {
		return out, fmt.Sprintf("could not start %s: %v", j.shell, err)
	}
	defer removeDir(log, ctl)
	scriptPath := filepath.Join(ctl, "script")
	varsPath := filepath.Join(ctl, "vars")
	if err := os.WriteFile(scriptPath, []byte(j.script), 0o600); err != nil {
		return out, fmt.Sprintf("could not start %s: %v", j.shell, err)
	}

	dir := j.dir
	if dir == "" {
		if dir, err = os.MkdirTemp(h.TempDir, "dlite-work-"); err != nil {
			return out, fmt.Sprintf("could not start %s: %v", j.shell, err)
		}
		defer removeDir(log, dir)
	} else if err := checkDir(dir); err != nil {
		return out, fmt.Sprintf("could not start %s: %v", j.shell, err)
	}

	envelope, _ := tasks.FromContext(ctx)
	output := newTailBuffer(h.outputLimit())
	grace := h.killGrace()
	var g procgroup.Group
	cmd := exec.CommandContext(ctx, h.shellPath(j.shell), "-c", wrapper(scriptPath, varsPath, j.vars), scriptPath)
	cmd.Dir = dir
	cmd.Env = environ(h.environ(), j.env, envelope)
	// One writer for both streams makes exec hand the child a single pipe for stdout and
	// stderr, so the output interleaves exactly as the script wrote it.
	cmd.Stdout, cmd.Stderr = output, output
	cmd.SysProcAttr = procgroup.SysProcAttr()
	cmd.Cancel = func() error { return g.Terminate(cmd.Process.Pid) }
	// After SIGTERM, or after the shell exits while a background process still holds the
	// output pipe, exec waits this long, then kills the shell and closes the pipe so Wait
	// cannot hang on a grandchild.
	cmd.WaitDelay = grace

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return out, "not started: " + context.Cause(ctx).Error()
		}
		return out, fmt.Sprintf("could not start %s: %v", j.shell, err)
	}
	pid := cmd.Process.Pid
	log.Debug("script started", "shell", string(j.shell), "pid", pid, "dir", dir)

	waitErr := cmd.Wait()
	interrupted := g.Terminated()
	g.Stop(pid, grace)

	out.Output = output.String()
	if vars, err := readVars(varsPath, j.vars); err != nil {
		log.Warn("could not read the script's output variables", "err", err)
	} else {
		out.OutputVars = vars
	}
	state := cmd.ProcessState
	if state != nil {
		out.ExitCode = state.ExitCode()
	}
	log.Debug("script ended", "pid", pid, "exitCode", out.ExitCode, "interrupted", interrupted,
		"outputBytes", output.Total(), "err", waitErr)

	switch {
	case interrupted:
		return out, "killed: " + context.Cause(ctx).Error()
	case state == nil:
		return out, fmt.Sprintf("waiting for %s: %v", j.shell, waitErr)
	case !state.Success():
		// "exit status N", or "signal: killed" when something else killed the shell.
		return out, state.String()
	}
	return out, ""
}

// standardShellDirs are where the shells live on every system the runner supports. They are
// looked at when the shell is not on the runner's PATH, as for a runner started with an empty
// environment, where a POSIX shell would fall back to its default path as well.
var standardShellDirs = []string{"/bin", "/usr/bin"}

func (h *Handler) shellPath(shell gentasks.ShellScriptDataShell) string {
	if p := h.Shells[shell]; p != "" {
		return p
	}
	name := string(shell)
	if _, err := exec.LookPath(name); err == nil {
		return name
	}
	for _, dir := range standardShellDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return name
}

func (h *Handler) killGrace() time.Duration {
	if h.KillGrace > 0 {
		return h.KillGrace
	}
	return DefaultKillGrace
}

func (h *Handler) outputLimit() int {
	if h.OutputLimit > 0 {
		return h.OutputLimit
	}
	return DefaultOutputLimit
}

func (h *Handler) environ() []string {
	if h.Environ != nil {
		return h.Environ()
	}
	return os.Environ()
}

func checkDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("working directory %s is not a directory", dir)
	}
	return nil
}

// removeDir removes a temporary directory. Scripts can leave directories without write
// permission behind (Go's module cache does), so a failed removal is retried once after making
// every directory in the tree writable again.
func removeDir(log *slog.Logger, dir string) {
	if os.RemoveAll(dir) == nil {
		return
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("could not remove a temporary directory", "dir", dir, "err", err)
	}
}
