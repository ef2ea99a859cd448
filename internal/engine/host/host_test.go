package host

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const grace = 200 * time.Millisecond

func newStage(t *testing.T, id string) *engine.Stage {
	t.Helper()
	dir := t.TempDir()
	st := &engine.Stage{Spec: engine.StageSpec{ID: id}, Workspace: filepath.Join(dir, "ws"), Shared: filepath.Join(dir, "shared")}
	require.NoError(t, os.Mkdir(st.Workspace, 0o700))
	require.NoError(t, os.Mkdir(st.Shared, 0o700))
	return st
}

func run(st *engine.Stage, id, script string, out *syncbuf.Buffer) engine.Run {
	r := engine.Run{
		Stage:      st,
		Step:       &engine.StepSpec{ID: id, Entrypoint: []string{"sh", "-c"}, Commands: []string{script}},
		Env:        map[string]string{"GREETING": "hello"},
		WorkingDir: st.Workspace,
	}
	if out != nil {
		r.Output = out
	}
	return r
}

// alive reports whether pid is a process that has not ended (a zombie has ended).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	return pid
}

func TestStartRunsWithOnlyTheAssembledEnvironment(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r1", KillGrace: grace})
	b.environ = func() []string {
		return []string{"PATH=/usr/bin:/bin", "HOME=/home/ci", "DLITE_ACCOUNT_SECRET=s3cr3t", "RUNNER_ONLY=x"}
	}
	st := newStage(t, "stage-env")
	var out syncbuf.Buffer
	p, err := b.Start(t.Context(), run(st, "s1", `env | sort; pwd; echo to-stderr >&2; exit 3`, &out))
	require.NoError(t, err)
	exit, err := p.Wait(t.Context())
	require.NoError(t, err)
	require.Equal(t, 3, exit.Code)
	got := out.String()
	for _, want := range []string{"GREETING=hello\n", "HOME=/home/ci\n", "PATH=/usr/bin:/bin\n",
		"IO_DLITE_STAGE=stage-env\n", "IO_DLITE_RUNNER=r1\n", "IO_DLITE_STEP=s1\n", st.Workspace + "\n", "to-stderr\n"} {
		require.Contains(t, got, want)
	}
	require.NotContains(t, got, "s3cr3t", "the runner's settings stay out")
	require.NotContains(t, got, "RUNNER_ONLY", "only the base variables of the runner are passed on")
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 2", 2},
		{"kill -KILL $$", 128 + 9},
	}
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "codes")
	for i, tt := range tests {
		p, err := b.Start(t.Context(), run(st, "s"+strconv.Itoa(i), tt.script, nil))
		require.NoError(t, err)
		exit, err := p.Wait(t.Context())
		require.NoError(t, err)
		require.Equal(t, tt.want, exit.Code, tt.script)
	}
}

func TestStartOfARunningStepReturnsItsProcess(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "join")
	marker := filepath.Join(st.Workspace, "count")
	script := `echo x >> ` + marker + `; sleep 60`
	p1, err := b.Start(t.Context(), run(st, "s", script, nil))
	require.NoError(t, err)
	p2, err := b.Start(t.Context(), run(st, "s", script, nil))
	require.NoError(t, err)
	require.Same(t, p1, p2)
	require.Eventually(t, func() bool { b, _ := os.ReadFile(marker); return len(b) > 0 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, p1.Stop(t.Context(), grace))
	b2, err := os.ReadFile(marker)
	require.NoError(t, err)
	require.Equal(t, "x\n", string(b2), "the step ran once")
}

func TestABackgroundedChildEndsWithItsStep(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "bg")
	pidFile := filepath.Join(st.Workspace, "child")
	// The child ignores SIGTERM and keeps the step's output open.
	p, err := b.Start(t.Context(), run(st, "s", `trap '' TERM; sleep 60 & echo $! > `+pidFile+`; echo done`, nil))
	require.NoError(t, err)
	exit, err := p.Wait(t.Context())
	require.NoError(t, err)
	require.Equal(t, 0, exit.Code)
	child := readPid(t, pidFile)
	require.Eventually(t, func() bool { return !alive(child) }, 10*time.Second, 10*time.Millisecond)
}

func TestStopEndsTheGroup(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "stop")
	pidFile := filepath.Join(st.Workspace, "child")
	p, err := b.Start(t.Context(), run(st, "s", `trap '' TERM; sleep 60 & echo $! > `+pidFile+`; wait`, nil))
	require.NoError(t, err)
	child := readPid(t, pidFile)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	_, err = p.Wait(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "Wait returns with its context")

	require.NoError(t, p.Stop(t.Context(), grace))
	exit, err := p.Wait(t.Context())
	require.NoError(t, err)
	require.Equal(t, 128+9, exit.Code, "the shell ignored SIGTERM and was killed")
	require.Eventually(t, func() bool { return !alive(child) }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, p.Stop(t.Context(), grace), "stopping an ended step is fine")
}

func TestDestroyStageStopsItsStepsOnly(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "destroy-me")
	other := newStage(t, "keep-me")
	p1, err := b.Start(t.Context(), run(st, "svc", `sleep 60`, nil))
	require.NoError(t, err)
	p2, err := b.Start(t.Context(), run(other, "svc", `sleep 60`, nil))
	require.NoError(t, err)

	require.NoError(t, b.DestroyStage(t.Context(), "destroy-me"))
	exit, err := p1.Wait(t.Context())
	require.NoError(t, err)
	require.Equal(t, 128+15, exit.Code)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, err = p2.Wait(ctx)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "another stage's step runs on")
	require.NoError(t, b.DestroyStage(t.Context(), "keep-me"))
	require.NoError(t, b.DestroyStage(t.Context(), "never-seen"))
}

func TestDestroyStageFindsLeftoversOfAnotherRunnerProcess(t *testing.T) {
	t.Parallel()
	st := newStage(t, "orphaned")
	pidFile := filepath.Join(st.Workspace, "child")
	// A stands for a runner process that died: its live table is lost, its processes are not.
	a := New(Options{RunnerID: "r-orphan", KillGrace: grace})
	p, err := a.Start(t.Context(), run(st, "svc", `sleep 60 & echo $! > `+pidFile+`; wait`, nil))
	require.NoError(t, err)
	child := readPid(t, pidFile)

	stranger := New(Options{RunnerID: "someone-else", KillGrace: grace})
	require.NoError(t, stranger.DestroyStage(t.Context(), "orphaned"))
	require.True(t, alive(child), "processes of another runner are left alone")

	b := New(Options{RunnerID: "r-orphan", KillGrace: grace})
	require.NoError(t, b.DestroyStage(t.Context(), "orphaned"))
	require.False(t, alive(child))
	_, err = p.Wait(t.Context())
	require.NoError(t, err)
}

func TestStartStopsLeftoversOfTheSameStep(t *testing.T) {
	t.Parallel()
	st := newStage(t, "rerun")
	pidFile := filepath.Join(st.Workspace, "first")
	a := New(Options{RunnerID: "r-rerun", KillGrace: grace})
	p, err := a.Start(t.Context(), run(st, "s", `echo $$ > `+pidFile+`; sleep 60`, nil))
	require.NoError(t, err)
	first := readPid(t, pidFile)

	b := New(Options{RunnerID: "r-rerun", KillGrace: grace})
	p2, err := b.Start(t.Context(), run(st, "s", `true`, nil))
	require.NoError(t, err)
	require.False(t, alive(first), "the dead runner's copy of the step was stopped before the new one")
	_, err = p.Wait(t.Context())
	require.NoError(t, err)
	_, err = p2.Wait(t.Context())
	require.NoError(t, err)
}

func TestStartRefusesWhatCannotRun(t *testing.T) {
	t.Parallel()
	b := New(Options{RunnerID: "r", KillGrace: grace})
	st := newStage(t, "bad")
	_, err := b.Start(t.Context(), engine.Run{Stage: st, Step: &engine.StepSpec{ID: "s"}})
	require.ErrorIs(t, err, engine.ErrInvalid)
	_, err = b.Start(t.Context(), engine.Run{Stage: st, Step: &engine.StepSpec{ID: "s", Entrypoint: []string{"no-such-program-here"}}})
	require.ErrorContains(t, err, "no-such-program-here")
	_, err = b.Start(t.Context(), engine.Run{Stage: st, Step: &engine.StepSpec{ID: "s", Entrypoint: []string{"true"}}, WorkingDir: "/does/not/exist"})
	require.Error(t, err)
}

func TestLookPathUsesTheStepsPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tool := filepath.Join(dir, "my-tool")
	require.NoError(t, os.WriteFile(tool, []byte("#!/bin/sh\necho mine\n"), 0o755))
	got, err := lookPath("my-tool", "relative:"+dir)
	require.NoError(t, err)
	require.Equal(t, tool, got)
	got, err = lookPath("/bin/sh", "")
	require.NoError(t, err)
	require.Equal(t, "/bin/sh", got)
}

func TestSetupStageChecksTheDirectories(t *testing.T) {
	t.Parallel()
	b := New(Options{})
	st := newStage(t, "dirs")
	require.NoError(t, b.SetupStage(t.Context(), st))
	require.Equal(t, engine.StepPaths{Workspace: st.Workspace, Shared: st.Shared}, b.Paths(st))
	st.Shared = filepath.Join(st.Shared, "missing")
	require.Error(t, b.SetupStage(t.Context(), st))
	require.Equal(t, "host", b.Name())
}
