package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/mockmanager"
)

// A script runs as the runner's user, yet cannot read the runner's environment, where the account
// secret is, from /proc/$PPID/environ: the runner made itself non-dumpable. The runner runs as
// nobody here, since root may read any process's files.
func TestScriptsCannotReadTheRunnersEnvironment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the runner as another user")
	}
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	const nobody = 65534

	// A tree that user can read (the binary) and write (spool, temp dirs, working directory); the
	// runner makes its own stage state directory, which must be its own.
	dir := filepath.Join(os.TempDir(), "dlite-harden-"+strings.ReplaceAll(t.Name(), "/", "_"))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	exe := filepath.Join(dir, "dlite")
	b, err := os.ReadFile(binary)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(exe, b, 0o755))
	for _, sub := range []string{"spool", "tmp", "home"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, sub), 0o777))
		require.NoError(t, os.Chmod(filepath.Join(dir, sub), 0o777))
	}

	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(dir, "home"), "TMPDIR=" + filepath.Join(dir, "tmp"),
		"DLITE_MANAGER_ENDPOINT=" + mm.URL, "DLITE_ACCOUNT_ID=" + mm.AccountID(), "DLITE_ACCOUNT_SECRET=" + mm.AccountSecret(),
		"DLITE_SPOOL_DIR=" + filepath.Join(dir, "spool"), "DLITE_STATE_DIR=" + filepath.Join(dir, "tmp", "stages"),
		"DLITE_POLL_INTERVAL_MILLISECS=50", "DLITE_HTTP_ADDR=off",
	}
	cmd := exec.Command(exe, "run")
	cmd.Env, cmd.Dir = env, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	p := startProcess(t, cmd)

	id := enqueue(t, mm, newTask(t, "SHELL_SCRIPT_TASK", map[string]any{
		"script": `id -u; cat /proc/$PPID/environ; echo "cat exited $?"`,
	}, 60))
	st := waitTask(t, mm, id, isAnswered)
	out := string(*st.Responses[0].Data)
	require.Contains(t, out, "65534", "the script ran as the runner's user")
	require.Contains(t, out, "Permission denied")
	require.NotContains(t, out, mm.AccountSecret())
	p.signal(t, syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t))
}
