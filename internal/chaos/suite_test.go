package chaos_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
)

// TestChaos runs the chaos suite: 300 tasks through two runner processes (CHAOS_TASKS sets
// another count) while the manager fails a fifth of the calls, resets a tenth, answers slowly and
// loses some answers, and one runner is killed with SIGKILL and restarted midway. Nothing may be
// lost and nothing executed twice. It takes about a minute, so -short skips it.
func TestChaos(t *testing.T) {
	runChaos(t, chaos.Config{})
}

// TestChaosLostAcquires is the suite with every acquire answer lost for 65s, longer than runners
// ever waited for one before giving it up: the manager grants the tasks and hears nothing more of
// them until the answers get through, and each must still run exactly once.
func TestChaosLostAcquires(t *testing.T) {
	runChaos(t, chaos.Config{LoseAcquiresFor: 65 * time.Second})
}

// TestChaosManagerRestartsEmpty is the suite with the manager gone for a few seconds midway and
// back having forgotten every runner (no runner is killed this time): they register again and
// take work again, and the tasks they held are answered once.
func TestChaosManagerRestartsEmpty(t *testing.T) {
	rep := runChaos(t, chaos.Config{RestartAt: 0.3, KillAt: -1})
	require.Equal(t, 1, rep.Restarts)
	require.GreaterOrEqual(t, rep.Registrations, 4, "both runners registered again after the restart")
}

// runChaos runs the suite with cfg over the defaults and requires it to pass.
func runChaos(t *testing.T, cfg chaos.Config) *chaos.Report {
	t.Helper()
	if testing.Short() {
		t.Skip("the chaos suite runs real runner processes for a minute or more")
	}
	tasks, deadline := 300, 3*time.Minute
	if v, err := strconv.Atoi(os.Getenv("CHAOS_TASKS")); err == nil && v > 0 {
		tasks = v
		if tasks > 300 {
			deadline = 5 * time.Minute
		}
	}
	workDir := t.TempDir()
	cfg.WorkDir, cfg.Race, cfg.Tasks, cfg.Deadline, cfg.Progress = workDir, raceEnabled, tasks, deadline, t.Output()
	rep, err := chaos.Run(t.Context(), cfg)
	require.NoError(t, err)
	rep.Print(t.Output())
	// The work directory goes with the test: what the runners logged about a task that went wrong
	// is printed here, so a failure in CI can be read from its output.
	showLogs(t, workDir, append(append([]string(nil), rep.LostIDs...), rep.DuplicateIDs...))
	require.Equal(t, tasks, rep.Submitted)
	require.Zero(t, rep.Lost, "tasks without a result: %v", rep.LostIDs)
	require.Zero(t, rep.DuplicateExecutions, "tasks executed twice: %v", rep.DuplicateIDs)
	require.Zero(t, rep.RaceReports, "data races in the runners")
	require.False(t, rep.DeadlineExceeded, "the run did not end within %s", deadline)
	if cfg.KillAt >= 0 {
		require.Equal(t, 1, rep.Kills)
		require.Equal(t, 3, rep.Starts, "two runners, one of them started again after the kill")
	} else {
		require.Equal(t, 2, rep.Starts)
	}
	require.Zero(t, rep.NotOK, "every task of the suite succeeds")
	require.True(t, rep.OK())
	return rep
}

// showLogs prints the runner log lines that name one of ids, at most 40 per task.
func showLogs(t *testing.T, dir string, ids []string) {
	t.Helper()
	if len(ids) == 0 {
		return
	}
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	for _, id := range ids {
		shown := 0
		for _, name := range logs {
			data, err := os.ReadFile(name)
			require.NoError(t, err)
			for line := range strings.Lines(string(data)) {
				if strings.Contains(line, id) && shown < 40 {
					t.Logf("%s: %s", filepath.Base(name), strings.TrimSpace(line))
					shown++
				}
			}
		}
	}
}
