package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/syncbuf"
	"github.com/dlite-dev/dlite/mockmanager"
)

// The dlite binary the process tests run, built on first use and removed by TestMain.
var (
	binaryOnce sync.Once
	binaryDir  string
	binaryPath string
	binaryErr  error
)

// dliteBinary builds ./cmd/dlite once per test run and returns its path.
func dliteBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryDir, binaryErr = os.MkdirTemp("", "dlite-e2e-bin-")
		if binaryErr != nil {
			return
		}
		binaryPath = filepath.Join(binaryDir, "dlite")
		var out bytes.Buffer
		build := exec.Command("go", "build", "-o", binaryPath, "github.com/dlite-dev/dlite/cmd/dlite")
		build.Stdout, build.Stderr = &out, &out
		if err := build.Run(); err != nil {
			binaryErr = fmt.Errorf("build dlite: %w\n%s", err, out.String())
		}
	})
	require.NoError(t, binaryErr)
	return binaryPath
}

func removeBinary() {
	if binaryDir != "" {
		_ = os.RemoveAll(binaryDir)
	}
}

// proc is a dlite binary running `dlite run`.
type proc struct {
	cmd    *exec.Cmd
	out    *syncbuf.Buffer
	exited chan struct{}
}

// ciRunnerEnv is the environment of a CI runner process against mm: its name, spool and state
// directory are the caller's, so a restarted runner can be the same runner.
func ciRunnerEnv(mm *mockmanager.TestServer, name, spool, state string, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"DLITE_MANAGER_ENDPOINT=" + mm.URL,
		"DLITE_ACCOUNT_ID=" + mm.AccountID(),
		"DLITE_ACCOUNT_SECRET=" + mm.AccountSecret(),
		"DLITE_NAME=" + name,
		"DLITE_SPOOL_DIR=" + spool,
		"DLITE_STATE_DIR=" + state,
		"DLITE_POLL_INTERVAL_MILLISECS=50",
		"DLITE_HEARTBEAT_INTERVAL=1s",
		"DLITE_HTTP_ADDR=off",
		"DLITE_LOG_LEVEL=debug",
		"DLITE_DOCKER=on",
	}, extra...)
}

// startProc starts `dlite run` with env; it is killed when the test ends, and its log is shown
// when the test failed.
func startProc(t *testing.T, env []string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(dliteBinary(t), "run"), out: &syncbuf.Buffer{}, exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start())
	go func() {
		defer close(p.exited)
		_ = p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("dlite (pid %d) wrote:\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// kill ends the process with SIGKILL, as a crash or the OOM killer would, and waits for it.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(waitFor):
		t.Fatal("dlite did not die of SIGKILL")
	}
}

// running reports whether the process is still running.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}
