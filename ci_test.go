package dlite

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/mockmanager"
)

// ciConfig is a configuration against mm with the CI settings given.
func ciConfig(t *testing.T, mm *mockmanager.TestServer, settings map[string]string) *Config {
	t.Helper()
	env := map[string]string{
		"DLITE_MANAGER_ENDPOINT": mm.URL,
		"DLITE_ACCOUNT_ID":       mm.AccountID(),
		"DLITE_ACCOUNT_SECRET":   mm.AccountSecret(),
		"DLITE_SPOOL_DIR":        filepath.Join(t.TempDir(), "spool"),
		"DLITE_HTTP_ADDR":        "off",
	}
	for k, v := range settings {
		env[k] = v
	}
	cfg, err := LoadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err)
	return cfg
}

// The CI task types are served when asked for, on a stage engine whose state directory is made
// private at start; without CITasks the runner has no engine.
func TestCITasksAreServedOnAStageEngine(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	cfg := ciConfig(t, mm, map[string]string{"DLITE_DOCKER": "off"})

	r, err := New(Options{Config: cfg, TaskServers: []TaskServer{BuiltinTasks()}, CITasks: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	require.Equal(t, []string{"CI_DOCKER_CLEANUP_TASK", "CI_DOCKER_EXECUTE_TASK", "CI_DOCKER_INITIALIZE_TASK",
		"DLITE_CI_VM_CLEANUP_TASK", "DLITE_CI_VM_EXECUTE_TASK", "DLITE_CI_VM_INITIALIZE_TASK",
		"HTTP_TASK", "SHELL_SCRIPT_TASK", "SLEEP_TASK"}, r.TaskTypes())
	require.NotNil(t, r.rt.Engine.Engine)
	fi, err := os.Stat(cfg.StateDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "the stage records hold secrets")
	require.Equal(t, cfg.SpoolDir+"-stages", cfg.StateDir)

	plain, err := New(Options{Config: ciConfig(t, mm, nil), TaskServers: []TaskServer{BuiltinTasks()}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	require.Equal(t, []string{"HTTP_TASK", "SHELL_SCRIPT_TASK", "SLEEP_TASK"}, plain.TaskTypes())
	require.Nil(t, plain.rt.Engine.Engine)
}

// DLITE_DOCKER=on refuses to start without a daemon and says why; auto starts and warns that
// container steps cannot run.
func TestDockerModeWithoutADaemon(t *testing.T) {
	// No daemon listens on this socket; the Docker client reads DOCKER_HOST from the process.
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	mm := mockmanager.NewTest(t, mockmanager.Options{})

	_, err := New(Options{Config: ciConfig(t, mm, map[string]string{"DLITE_DOCKER": "on"}), CITasks: true, Logger: slog.New(slog.DiscardHandler)})
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.ErrorContains(t, err, "DLITE_DOCKER is on")
	require.ErrorContains(t, err, "no-docker.sock")

	var logs bytes.Buffer
	r, err := New(Options{Config: ciConfig(t, mm, map[string]string{"DLITE_DOCKER": "auto"}), CITasks: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	require.True(t, strings.Contains(logs.String(), "no Docker daemon"), logs.String())
	require.Contains(t, r.TaskTypes(), "CI_DOCKER_EXECUTE_TASK", "host steps still run")
}
