package shell_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/internal/handlertest"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/shell"
)

// start calls h.Run with data in its own goroutine; handlertest.Wait collects the response.
func start(ctx context.Context, h *shell.Handler, data gentasks.ShellScriptData) <-chan gentasks.ShellScriptTaskResponseObject {
	return handlertest.Start(func() (gentasks.ShellScriptTaskResponseObject, error) {
		return h.Run(ctx, gentasks.ShellScriptTaskRequestObject{Body: &data})
	})
}

func run(t *testing.T, ctx context.Context, h *shell.Handler, data gentasks.ShellScriptData) gentasks.ShellScriptTaskResponseObject {
	t.Helper()
	return handlertest.Wait(t, start(ctx, h, data))
}

func succeeded(t *testing.T, resp gentasks.ShellScriptTaskResponseObject) gentasks.ShellScriptOutput {
	t.Helper()
	ok, isOK := resp.(gentasks.ShellScriptTask200JSONResponse)
	require.True(t, isOK, "want 200, got %#v", resp)
	return gentasks.ShellScriptOutput(ok)
}

func failed(t *testing.T, resp gentasks.ShellScriptTaskResponseObject) gentasks.ShellScriptFailure {
	t.Helper()
	f, isFailure := resp.(gentasks.ShellScriptTask422JSONResponse)
	require.True(t, isFailure, "want 422, got %#v", resp)
	require.NotNil(t, f.Data.OutputVars)
	return gentasks.ShellScriptFailure(f)
}

func rejected(t *testing.T, resp gentasks.ShellScriptTaskResponseObject) string {
	t.Helper()
	bad, isBad := resp.(gentasks.ShellScriptTask400JSONResponse)
	require.True(t, isBad, "want 400, got %#v", resp)
	return bad.Message
}

func ptr[T any](v T) *T { return &v }

func TestExitZero(t *testing.T) {
	t.Parallel()
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: "echo hello"}))
	require.Equal(t, gentasks.ShellScriptOutput{ExitCode: 0, Output: "hello\n", OutputVars: map[string]string{}}, out)
}

func TestNonZeroExitKeepsOutput(t *testing.T) {
	t.Parallel()
	f := failed(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: "echo oops\nexit 3\necho never"}))
	require.Equal(t, "exit status 3", f.Message)
	require.Equal(t, 3, f.Data.ExitCode)
	require.Equal(t, "oops\n", f.Data.Output)
}

func TestKilledBySignalIsAFailure(t *testing.T) {
	t.Parallel()
	f := failed(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: "echo bye; kill -KILL $$"}))
	require.Equal(t, "signal: killed", f.Message)
	require.Equal(t, -1, f.Data.ExitCode)
	require.Equal(t, "bye\n", f.Data.Output)
}

func TestStdoutAndStderrInterleave(t *testing.T) {
	t.Parallel()
	script := "echo out1; echo err1 >&2; printf out2; printf ' err2\\n' >&2; echo out3"
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: script}))
	require.Equal(t, "out1\nerr1\nout2 err2\nout3\n", out.Output)
}

func TestOutputKeepsTheTail(t *testing.T) {
	t.Parallel()
	h := &shell.Handler{OutputLimit: 10}
	out := succeeded(t, run(t, t.Context(), h, gentasks.ShellScriptData{Script: "printf 0123456789; printf abcdef >&2; printf ghij"}))
	require.Equal(t, "abcdefghij", out.Output)
}

func TestOutputKeepsTheLast64KiB(t *testing.T) {
	t.Parallel()
	// 3000 numbered lines of 65 bytes: about three times the default limit.
	script := `i=0; while [ $i -lt 3000 ]; do printf '%064d\n' $i; i=$((i+1)); done`
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: script}))

	var all strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&all, "%064d\n", i)
	}
	want := all.String()[all.Len()-shell.DefaultOutputLimit:]
	require.Len(t, out.Output, shell.DefaultOutputLimit)
	require.Equal(t, want, out.Output)
}

func TestOutputVars(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		shell    gentasks.ShellScriptDataShell
		script   string
		vars     []string
		wantCode int
		want     map[string]string
	}{
		{
			name:   "set at the end",
			script: "A=1\nB='x=y\nz'\nexport C=exported\nEMPTY=",
			vars:   []string{"A", "B", "C", "EMPTY", "UNSET"},
			want:   map[string]string{"A": "1", "B": "x=y\nz", "C": "exported", "EMPTY": ""},
		},
		{
			name:     "exit stops the script but not the capture",
			script:   "A=before\nexit 4\nA=after",
			vars:     []string{"A"},
			wantCode: 4,
			want:     map[string]string{"A": "before"},
		},
		{
			name:   "exit 0 from a function",
			script: "f() { A=in-function; exit 0; }\nf\nA=never",
			vars:   []string{"A"},
			want:   map[string]string{"A": "in-function"},
		},
		{
			name:   "last value wins, unset removes",
			script: "A=1; A=2; B=1; unset B",
			vars:   []string{"A", "B"},
			want:   map[string]string{"A": "2"},
		},
		{
			name:     "set -u and set -e do not break the capture",
			script:   "set -eu\nA=1\nfalse\nA=2",
			vars:     []string{"A", "NEVER_SET"},
			wantCode: 1,
			want:     map[string]string{"A": "1"},
		},
		{
			name:     "a syntax error ends the shell, the values are still read",
			script:   "A=1\nif then\n",
			vars:     []string{"A"},
			wantCode: 2,
			want:     map[string]string{"A": "1"},
		},
		{
			name:   "bash",
			shell:  gentasks.ShellScriptDataShellBash,
			script: "A=$((6*7)); declare -a ARR=(a b); B=${ARR[1]}",
			vars:   []string{"A", "B"},
			want:   map[string]string{"A": "42", "B": "b"},
		},
		{
			name:   "a script's own EXIT trap replaces the recording",
			script: "A=1; trap 'echo own trap' EXIT",
			vars:   []string{"A"},
			want:   map[string]string{},
		},
		{
			name:   "names not asked for are not returned",
			script: "A=1; B=2",
			vars:   []string{"B"},
			want:   map[string]string{"B": "2"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := gentasks.ShellScriptData{Script: tc.script, OutputVars: &tc.vars}
			if tc.shell != "" {
				requireShell(t, string(tc.shell))
				data.Shell = &tc.shell
			}
			resp := run(t, t.Context(), &shell.Handler{}, data)
			if tc.wantCode == 0 {
				out := succeeded(t, resp)
				require.Equal(t, tc.want, out.OutputVars)
				return
			}
			f := failed(t, resp)
			require.Equal(t, fmt.Sprintf("exit status %d", tc.wantCode), f.Message)
			require.Equal(t, tc.wantCode, f.Data.ExitCode)
			require.Equal(t, tc.want, f.Data.OutputVars)
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	h := &shell.Handler{Environ: func() []string {
		return []string{
			"PATH=" + os.Getenv("PATH"),
			"KEEP=runner",
			"DLITE_ACCOUNT_SECRET=hunter2",
			"DLITE_TOKEN=hunter2",
			"Dlite_Mixed=hunter2",
			"DRONE_DELEGATE_ACCOUNT_SECRET=hunter2",
		}
	}}
	ctx := tasks.WithEnvelope(t.Context(), &tasks.Envelope{ID: "task-7", Type: "SHELL_SCRIPT_TASK"})
	out := succeeded(t, run(t, ctx, h, gentasks.ShellScriptData{
		Script: "env",
		Env:    &map[string]string{"KEEP": "task", "EXTRA": "with spaces = and equals"},
	}))
	require.NotContains(t, out.Output, "hunter2")
	lines := strings.Split(out.Output, "\n")
	require.Contains(t, lines, "KEEP=task")
	require.Contains(t, lines, "EXTRA=with spaces = and equals")
	require.Contains(t, lines, "DLITE_TASK_ID=task-7")
	require.Contains(t, lines, "DLITE_TASK_TYPE=SHELL_SCRIPT_TASK")
}

func TestEnvironmentWithoutEnvelope(t *testing.T) {
	t.Parallel()
	h := &shell.Handler{Environ: func() []string { return []string{"PATH=" + os.Getenv("PATH")} }}
	out := succeeded(t, run(t, t.Context(), h, gentasks.ShellScriptData{Script: "env"}))
	require.NotContains(t, out.Output, "DLITE_")
}

// The runner's real environment: t.Setenv rules out t.Parallel.
func TestEnvironmentHidesRunnerSecrets(t *testing.T) {
	t.Setenv("DLITE_ACCOUNT_SECRET", "0123456789abcdef0123456789abcdef")
	t.Setenv("DLITE_SHELL_TEST_VISIBLE", "no")
	t.Setenv("SHELL_TEST_VISIBLE", "yes")
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{Script: "env"}))
	require.NotContains(t, out.Output, "0123456789abcdef0123456789abcdef")
	require.NotContains(t, out.Output, "DLITE_")
	require.Contains(t, strings.Split(out.Output, "\n"), "SHELL_TEST_VISIBLE=yes")
}

func requireShell(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	resolved, err := filepath.EvalSymlinks(p)
	require.NoError(t, err)
	return resolved
}

func TestShellChoice(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("needs /proc to see which program runs the script")
	}
	for _, name := range []gentasks.ShellScriptDataShell{"", gentasks.ShellScriptDataShellSh, gentasks.ShellScriptDataShellBash} {
		t.Run("shell="+string(name), func(t *testing.T) {
			t.Parallel()
			want := requireShell(t, "sh")
			data := gentasks.ShellScriptData{Script: "readlink /proc/$$/exe"}
			if name != "" {
				want = requireShell(t, string(name))
				data.Shell = &name
			}
			out := succeeded(t, run(t, t.Context(), &shell.Handler{}, data))
			require.Equal(t, want+"\n", out.Output)
		})
	}
}

func TestBashOnlySyntax(t *testing.T) {
	t.Parallel()
	requireShell(t, "bash")
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{
		Script: `[[ "abc" == a* ]] && echo "${BASH_VERSION:+bash}"`,
		Shell:  ptr(gentasks.ShellScriptDataShellBash),
	}))
	require.Equal(t, "bash\n", out.Output)
}

func TestWorkingDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := succeeded(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{
		Script:           "pwd; echo kept > file",
		WorkingDirectory: &dir,
	}))
	require.Equal(t, dir+"\n", out.Output)
	content, err := os.ReadFile(filepath.Join(dir, "file"))
	require.NoError(t, err)
	require.Equal(t, "kept\n", string(content))
}

func TestTemporaryWorkingDirectoryIsRemoved(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	h := &shell.Handler{TempDir: tmp}
	// A read-only directory inside must not keep the tree from being removed.
	out := succeeded(t, run(t, t.Context(), h, gentasks.ShellScriptData{
		Script: "pwd; mkdir -p ro/sub && touch ro/sub/f && chmod 500 ro/sub ro",
	}))
	wd := strings.TrimSpace(out.Output)
	require.Equal(t, tmp, filepath.Dir(wd))
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries, "temporary directories left behind")
}

func TestCannotStart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	cases := []struct {
		name string
		h    *shell.Handler
		data gentasks.ShellScriptData
		want []string
	}{
		{
			name: "missing working directory",
			h:    &shell.Handler{},
			data: gentasks.ShellScriptData{Script: "true", WorkingDirectory: ptr("/nonexistent/dlite-test")},
			want: []string{"could not start sh", "/nonexistent/dlite-test", "no such file or directory"},
		},
		{
			name: "working directory is a file",
			h:    &shell.Handler{},
			data: gentasks.ShellScriptData{Script: "true", WorkingDirectory: &file},
			want: []string{"could not start sh", file, "not a directory"},
		},
		{
			name: "missing shell",
			h:    &shell.Handler{Shells: map[gentasks.ShellScriptDataShell]string{"bash": "/nonexistent/bash"}},
			data: gentasks.ShellScriptData{Script: "true", Shell: ptr(gentasks.ShellScriptDataShellBash)},
			want: []string{"could not start bash", "/nonexistent/bash", "no such file or directory"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := failed(t, run(t, t.Context(), tc.h, tc.data))
			for _, w := range tc.want {
				require.Contains(t, f.Message, w)
			}
			require.Equal(t, -1, f.Data.ExitCode)
			require.Empty(t, f.Data.Output)
		})
	}
}

func TestBadTask(t *testing.T) {
	t.Parallel()
	resp, err := (&shell.Handler{}).Run(t.Context(), gentasks.ShellScriptTaskRequestObject{})
	require.NoError(t, err)
	require.Contains(t, rejected(t, resp), "no data")

	msg := rejected(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{
		Script:     "true",
		OutputVars: &[]string{"OK", "$(reboot)"},
	}))
	require.Contains(t, msg, "$(reboot)")

	msg = rejected(t, run(t, t.Context(), &shell.Handler{}, gentasks.ShellScriptData{
		Script:           "true",
		WorkingDirectory: ptr("relative/dir"),
	}))
	require.Contains(t, msg, "absolute")
}

// readPIDs waits until the script has written one pid per line into path.
func readPIDs(t *testing.T, path string, n int) []int {
	t.Helper()
	var pids []int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pids = pids[:0]
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return false
			}
			pids = append(pids, pid)
		}
		return len(pids) == n
	}, handlertest.HangGuard, 10*time.Millisecond)
	return pids
}

// gone reports whether pid no longer runs: it does not exist or is a zombie waiting for a
// parent that does not reap it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the parenthesised command name, which may itself contain ") ".
	s := string(stat)
	i := strings.LastIndex(s, ") ")
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func requireGone(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		require.Eventually(t, func() bool { return gone(pid) }, 10*time.Second, 20*time.Millisecond,
			"process %d survived its task", pid)
	}
}

func TestCancellationKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{errs.ErrAborted, errs.ErrShuttingDown} {
		t.Run(string(errs.CodeOf(cause)), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)

			done := start(ctx, &shell.Handler{}, gentasks.ShellScriptData{
				Script:           "echo started\nsleep 300 &\necho $$ $! > pids.tmp && mv pids.tmp pids\nwait",
				WorkingDirectory: &dir,
			})
			pids := readPIDs(t, filepath.Join(dir, "pids"), 2)
			cancel(cause)

			f := failed(t, handlertest.Wait(t, done))
			require.Equal(t, "killed: "+cause.Error(), f.Message)
			require.Equal(t, "started\n", f.Data.Output)
			require.Equal(t, -1, f.Data.ExitCode)
			requireGone(t, pids...)
		})
	}
}

func TestDeadlineStopsTheScript(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 500*time.Millisecond, errs.ErrTimeout)
	defer cancel()
	vars := []string{"A"}
	f := failed(t, run(t, ctx, &shell.Handler{}, gentasks.ShellScriptData{
		Script:     "A=partial\necho started\nsleep 300\nA=never",
		OutputVars: &vars,
	}))
	require.Equal(t, "killed: task timed out", f.Message)
	require.Equal(t, "started\n", f.Data.Output)
	require.Equal(t, -1, f.Data.ExitCode)
}

func TestProcessesIgnoringSIGTERMAreKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	done := start(ctx, &shell.Handler{KillGrace: 300 * time.Millisecond}, gentasks.ShellScriptData{
		// The ignored SIGTERM is inherited by the background sleep as well.
		Script:           "trap '' TERM\nsleep 300 &\necho $$ $! > pids.tmp && mv pids.tmp pids\nwait",
		WorkingDirectory: &dir,
	})
	pids := readPIDs(t, filepath.Join(dir, "pids"), 2)
	cancel(errs.ErrAborted)

	f := failed(t, handlertest.Wait(t, done))
	require.Equal(t, "killed: "+errs.ErrAborted.Error(), f.Message)
	requireGone(t, pids...)
}

func TestBackgroundJobsDoNotOutliveTheScript(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		// Holds the output pipe: Wait must not wait for it beyond the grace period.
		"holding the output":   "sleep 300 &\necho $! > pid.tmp && mv pid.tmp pid\necho done",
		"detached from output": "sleep 300 >/dev/null 2>&1 &\necho $! > pid.tmp && mv pid.tmp pid\necho done",
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := succeeded(t, run(t, t.Context(), &shell.Handler{KillGrace: 300 * time.Millisecond},
				gentasks.ShellScriptData{Script: script, WorkingDirectory: &dir}))
			require.Equal(t, "done\n", out.Output)
			requireGone(t, readPIDs(t, filepath.Join(dir, "pid"), 1)...)
		})
	}
}

func TestAlreadyCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errs.ErrShuttingDown)
	dir := t.TempDir()
	f := failed(t, run(t, ctx, &shell.Handler{}, gentasks.ShellScriptData{Script: "touch ran", WorkingDirectory: &dir}))
	require.Equal(t, "not started: "+errs.ErrShuttingDown.Error(), f.Message)
	_, err := os.Stat(filepath.Join(dir, "ran"))
	require.True(t, os.IsNotExist(err), "the script ran")
}

func ExampleHandler_Run() {
	h := &shell.Handler{}
	vars := []string{"GREETING"}
	resp, _ := h.Run(context.Background(), gentasks.ShellScriptTaskRequestObject{
		Body: &gentasks.ShellScriptData{Script: `GREETING="hello from $0"; echo hi >&2`, OutputVars: &vars},
	})
	out := resp.(gentasks.ShellScriptTask200JSONResponse)
	fmt.Printf("%d %q %t\n", out.ExitCode, out.Output, strings.HasPrefix(out.OutputVars["GREETING"], "hello from /"))
	// Output: 0 "hi\n" true
}
