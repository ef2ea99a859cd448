//go:build unix

package procgroup_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/procgroup"
)

func TestStopEndsTheGroupWithItsBackgroundedChild(t *testing.T) {
	t.Parallel()
	// The shell leaves a child that ignores SIGTERM behind and exits; only SIGKILL to the group
	// ends the child.
	cmd := exec.Command("sh", "-c", `trap '' TERM; sleep 60 >/dev/null 2>&1 & echo started`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	require.NoError(t, err)
	require.Equal(t, "started\n", string(out))
	pgid := cmd.Process.Pid
	require.True(t, procgroup.Exists(pgid), "the backgrounded child keeps the group alive")

	var g procgroup.Group
	require.False(t, g.Terminated())
	g.Stop(pgid, 100*time.Millisecond)
	require.True(t, g.Terminated())
	require.Eventually(t, func() bool { return !procgroup.Exists(pgid) }, 10*time.Second, 10*time.Millisecond)
}

func TestTerminateOfAGoneGroup(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Run())
	var g procgroup.Group
	require.Error(t, g.Terminate(cmd.Process.Pid))
	require.False(t, g.Terminated())
}

func TestIsRunnerSetting(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"DLITE_ACCOUNT_SECRET": true,
		"dlite_token":          true,
		"DRONE_DELEGATE_TOKEN": true,
		"DRONE_OUTPUT":         false,
		"PATH":                 false,
		"XDLITE_NOT_A_SETTING": false,
		"DRONE_DELEGATEX":      false,
	} {
		require.Equal(t, want, procgroup.IsRunnerSetting(name), name)
	}
}
