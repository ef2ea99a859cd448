package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/host"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const grace = 200 * time.Millisecond

// env is an engine on a temporary state directory with the real host backend.
type env struct {
	t        *testing.T
	stateDir string
	records  string
	eng      *engine.Engine
	logs     *fakeLogs
}

type envOption func(*engine.Options)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	stateDir := t.TempDir()
	en := &env{t: t, stateDir: stateDir, records: filepath.Join(stateDir, "records"), logs: &fakeLogs{}}
	en.eng = en.engine("runner-1", opts...)
	return en
}

// engine returns a new Engine on the env's directories, as a restarted runner would make it.
func (en *env) engine(runnerID string, opts ...envOption) *engine.Engine {
	en.t.Helper()
	store, err := engine.NewFileStore(en.records)
	require.NoError(en.t, err)
	o := engine.Options{
		Store:     store,
		Host:      host.New(host.Options{RunnerID: runnerID, KillGrace: grace}),
		Logs:      logstream.Registry{"fake": en.logs},
		RunnerID:  runnerID,
		StateDir:  en.stateDir,
		KillGrace: grace,
	}
	for _, opt := range opts {
		opt(&o)
	}
	eng, err := engine.New(o)
	require.NoError(en.t, err)
	return eng
}

func (en *env) setup(spec engine.StageSpec) *engine.Stage {
	en.t.Helper()
	st, err := en.eng.Setup(en.t.Context(), spec)
	require.NoError(en.t, err)
	require.Equal(en.t, engine.StageReady, st.State)
	return st
}

func (en *env) run(stageID string, spec engine.StepSpec) engine.StepResult {
	en.t.Helper()
	res, err := en.eng.Execute(en.t.Context(), stageID, spec)
	require.NoError(en.t, err)
	return res
}

// requireGone checks that nothing of the stage is left under the state directory or in the store.
func (en *env) requireGone(stageID string) {
	en.t.Helper()
	require.NoDirExists(en.t, filepath.Join(en.stateDir, "stages", engine.StageKey(stageID)))
	require.NoFileExists(en.t, filepath.Join(en.records, engine.StageKey(stageID)+".json"))
	stages, err := en.eng.Stages(en.t.Context())
	require.NoError(en.t, err)
	for _, st := range stages {
		require.NotEqual(en.t, stageID, st.Spec.ID)
	}
}

func sh(id, script string) engine.StepSpec {
	return engine.StepSpec{ID: id, Commands: []string{script}}
}

// fakeLogs is a log service in memory: a Factory and the Transport it hands out.
type fakeLogs struct {
	mu         sync.Mutex
	uploads    map[string][]string
	failUpload bool
}

func (f *fakeLogs) Transport(logstream.Config) (logstream.Transport, logstream.Options, error) {
	return f, logstream.Options{FlushEvery: 10 * time.Millisecond, RetryWait: time.Millisecond, Attempts: 2}, nil
}

func (f *fakeLogs) Open(context.Context, string) error                    { return nil }
func (f *fakeLogs) Write(context.Context, string, []logstream.Line) error { return nil }
func (f *fakeLogs) Close(context.Context, string, bool) error             { return nil }

func (f *fakeLogs) Upload(_ context.Context, key string, history []logstream.Line) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failUpload {
		return errors.New("log service unavailable")
	}
	if f.uploads == nil {
		f.uploads = map[string][]string{}
	}
	lines := make([]string, len(history))
	for i, l := range history {
		lines[i] = l.Out
	}
	f.uploads[key] = lines
	return nil
}

func (f *fakeLogs) lines(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploads[key]
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

func TestStageLifeOnTheHost(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	volDir := filepath.Join(t.TempDir(), "cache")
	fileDir := t.TempDir()
	st := en.setup(engine.StageSpec{
		ID:      "stage-life",
		Env:     map[string]string{"STAGE_VAR": "from-stage"},
		Volumes: []engine.Volume{{Name: "cache", Host: &engine.HostVolume{Path: volDir, Create: true, Remove: true}}},
		Files: []engine.File{
			{Path: filepath.Join(fileDir, "netrc"), Data: "machine x", Mode: 0o600},
			{Path: "/harness/config/settings.txt", Data: "in the workspace"},
		},
	})
	require.DirExists(t, volDir)
	require.FileExists(t, filepath.Join(fileDir, "netrc"))
	info, err := os.Stat(filepath.Join(en.stateDir, "stages", engine.StageKey("stage-life")))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "the stage's directory is private")
	data, err := os.ReadFile(filepath.Join(st.Workspace, "config", "settings.txt"))
	require.NoError(t, err)
	require.Equal(t, "in the workspace", string(data), "/harness paths land in the workspace on the host")

	res := en.run("stage-life", engine.StepSpec{
		ID: "s1", Commands: []string{`test "$STAGE_VAR/$STEP_VAR" = from-stage/from-step && test "$PWD" = "$WS"/sub && echo hi > out.txt`},
		Env:        map[string]string{"STEP_VAR": "from-step", "WS": st.Workspace},
		WorkingDir: "sub",
	})
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Equal(t, 0, res.ExitCode)
	require.FileExists(t, filepath.Join(st.Workspace, "sub", "out.txt"))

	res = en.run("stage-life", engine.StepSpec{ID: "s2", Commands: []string{`pwd; test "$PWD" = "$WS"`},
		Env: map[string]string{"WS": filepath.Join(st.Workspace, "config")}, WorkingDir: "/harness/config"})
	require.Equal(t, engine.StepSuccess, res.Status, "a container working directory maps into the workspace")

	res = en.run("stage-life", engine.StepSpec{ID: "fails", Commands: []string{`echo partial=yes >> "$DRONE_OUTPUT"; exit 3`},
		OutputVars: []string{"partial"}})
	require.Equal(t, engine.StepFailure, res.Status)
	require.Equal(t, 3, res.ExitCode)
	require.Equal(t, "exit status 3", res.Error)
	require.Equal(t, map[string]string{"partial": "yes"}, res.OutputVars, "a failed step still answers what it wrote")

	stages, err := en.eng.Stages(t.Context())
	require.NoError(t, err)
	require.Len(t, stages, 1)
	require.Len(t, stages[0].Steps, 3)
	require.Equal(t, "host", stages[0].Steps["s1"].Backend)

	require.NoError(t, en.eng.Cleanup(t.Context(), "stage-life"))
	en.requireGone("stage-life")
	require.NoDirExists(t, volDir, "a host volume marked remove is removed")
	require.NoFileExists(t, filepath.Join(fileDir, "netrc"))
	require.NoError(t, en.eng.Cleanup(t.Context(), "stage-life"), "cleanup is idempotent")
	_, err = en.eng.Execute(t.Context(), "stage-life", sh("late", "true"))
	require.ErrorIs(t, err, engine.ErrStageNotFound)
}

func TestOutputVariables(t *testing.T) {
	t.Parallel()
	tricky := "line one\nline=two\n  spaced  "
	tests := []struct {
		name     string
		stageEnv map[string]string
		step     engine.StepSpec
		wantVars map[string]string
		wantOut  []engine.Output
	}{
		{
			name:     "plain",
			step:     engine.StepSpec{ID: "plain", Commands: []string{`A=1; export B="x=y"`}, OutputVars: []string{"A", "B", "UNSET"}},
			wantVars: map[string]string{"A": "1", "B": "x=y"},
		},
		{
			name:     "base64 keeps newlines and equals signs",
			stageEnv: map[string]string{"CI_NEW_VERSION_GODOTENV": "true"},
			step: engine.StepSpec{ID: "b64", Commands: []string{`export TRICKY="$VALUE"`},
				Env: map[string]string{"VALUE": tricky}, OutputVars: []string{"TRICKY"}},
			wantVars: map[string]string{"TRICKY": tricky},
		},
		{
			name: "typed outputs, with secrets from the secret file",
			step: engine.StepSpec{ID: "typed",
				Commands: []string{`export VERSION=1.2.3 TOKEN=abc; echo "FROMFILE=s3cret" >> "$HARNESS_OUTPUT_SECRET_FILE"`},
				Outputs: []engine.OutputSpec{
					{Key: "version", Value: "VERSION"},
					{Key: "token", Value: "TOKEN", Type: engine.OutputSecret},
					{Key: "FROMFILE"},
					{Key: "missing", Value: "NOT_SET_ANYWHERE_X"},
				}},
			wantOut: []engine.Output{
				{Key: "version", Value: "1.2.3", Type: engine.OutputString},
				{Key: "token", Value: "abc", Type: engine.OutputSecret},
				{Key: "FROMFILE", Value: "s3cret", Type: engine.OutputSecret},
			},
		},
		{
			name:     "values the step writes itself, quoted or encoded",
			step:     engine.StepSpec{ID: "own", Commands: []string{`printf 'Q="a b\\nc"\nE=__B64__%s\n' "$(printf 'x\ny' | base64)" >> "$DRONE_OUTPUT"`}, OutputVars: []string{"Q", "E"}},
			wantVars: map[string]string{"Q": "a b\nc", "E": "x\ny"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			en := newEnv(t)
			id := "outputs-" + tt.step.ID
			en.setup(engine.StageSpec{ID: id, Env: tt.stageEnv})
			res := en.run(id, tt.step)
			require.Equal(t, engine.StepSuccess, res.Status, res.Error)
			if tt.wantVars != nil {
				require.Equal(t, tt.wantVars, res.OutputVars)
			}
			if tt.wantOut != nil {
				require.Equal(t, tt.wantOut, res.Outputs)
			}
			require.NoError(t, en.eng.Cleanup(t.Context(), id))
		})
	}
}

func TestOutputVariablesInPython(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "py"})
	for _, b64 := range []string{"false", "true"} {
		res := en.run("py", engine.StepSpec{ID: "py-" + b64, Entrypoint: []string{"python3", "-c"},
			Commands:   []string{"import os\nprint('hello from python')"},
			Env:        map[string]string{"CI_NEW_VERSION_GODOTENV": b64, "GREETING": "hi=there"},
			OutputVars: []string{"GREETING"}})
		if res.Status != engine.StepSuccess && strings.Contains(res.Error, "exit status 127") {
			t.Skip("python3 cannot run here")
		}
		require.Equal(t, engine.StepSuccess, res.Status, res.Error)
		require.Equal(t, map[string]string{"GREETING": "hi=there"}, res.OutputVars)
	}
	require.NoError(t, en.eng.Cleanup(t.Context(), "py"))
}

func TestOutputLineLimit(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "limit"})
	script := func(n int) string {
		return `printf 'BIG=%s\n' "$(head -c ` + strconv.Itoa(n) + ` /dev/zero | tr '\0' x)" >> "$DRONE_OUTPUT"`
	}
	res := en.run("limit", engine.StepSpec{ID: "fits", Commands: []string{script(65536 - 4)}, OutputVars: []string{"BIG"}})
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Len(t, res.OutputVars["BIG"], 65536-4)

	res = en.run("limit", engine.StepSpec{ID: "too-long", Commands: []string{script(65536)}, OutputVars: []string{"BIG"}})
	require.Equal(t, engine.StepFailure, res.Status)
	require.Equal(t, "output variable length is more than 65536 bytes", res.Error)
	require.NoError(t, en.eng.Cleanup(t.Context(), "limit"))
}

func TestOutputVarsNeedACommand(t *testing.T) {
	t.Parallel()
	en := newEnv(t, withDocker(&fakeDocker{}))
	en.setup(engine.StageSpec{ID: "no-cmd"})
	_, err := en.eng.Execute(t.Context(), "no-cmd", engine.StepSpec{ID: "plugin", Image: "plugins/x", OutputVars: []string{"A"}})
	require.ErrorIs(t, err, engine.ErrInvalid)
	require.ErrorContains(t, err, "output variable should not be set for unset entrypoint or command")
	_, err = en.eng.Execute(t.Context(), "no-cmd", engine.StepSpec{ID: "node", Entrypoint: []string{"node", "-e"}, Commands: []string{"1"}, OutputVars: []string{"A"}})
	require.ErrorIs(t, err, engine.ErrInvalid)
	require.NoError(t, en.eng.Cleanup(t.Context(), "no-cmd"))
}

func TestExportsReachLaterHostSteps(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "exports", Env: map[string]string{"OVERRIDE": "stage"}})
	res := en.run("exports", sh("first", `echo "BUILD_ID=42" >> "$DRONE_ENV"; echo "OVERRIDE=export" >> "$DRONE_ENV"`))
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	res = en.run("exports", engine.StepSpec{ID: "second", Commands: []string{`test "$BUILD_ID" = 42 && test "$OVERRIDE" = step`},
		Env: map[string]string{"OVERRIDE": "step"}})
	require.Equal(t, engine.StepSuccess, res.Status, "exports come after the stage env and before the step env")
	res = en.run("exports", sh("third", `test "$OVERRIDE" = export`))
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.NoError(t, en.eng.Cleanup(t.Context(), "exports"))
}

func TestStepTimeout(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "timeout"})
	pidFile := filepath.Join(st.Workspace, "child")
	res := en.run("timeout", engine.StepSpec{ID: "slow", Timeout: 300 * time.Millisecond,
		Commands: []string{`trap '' TERM; sleep 60 & echo $! > ` + pidFile + `; wait`}})
	require.Equal(t, engine.StepTimeout, res.Status)
	require.Equal(t, "step timed out after 300ms", res.Error)
	require.NotZero(t, res.ExitCode)
	require.False(t, alive(readPid(t, pidFile)), "the step's children are killed too")
	require.NoError(t, en.eng.Cleanup(t.Context(), "timeout"))
}

func TestStepAbort(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "abort"})
	marker := filepath.Join(st.Workspace, "started")
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		readPid(t, marker)
		cancel()
	}()
	res, err := en.eng.Execute(ctx, "abort", sh("long", `echo $$ > `+marker+`; sleep 60`))
	require.NoError(t, err)
	require.Equal(t, engine.StepAborted, res.Status)
	require.Equal(t, "step aborted: context canceled", res.Error)
	require.False(t, alive(readPid(t, marker)))

	again := en.run("abort", sh("long", "true"))
	require.Equal(t, res.Status, again.Status, "an ended step answers its stored result")
	require.NoError(t, en.eng.Cleanup(t.Context(), "abort"))
}

func TestDetachedStepEndsAtCleanup(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "detached"})
	pidFile := filepath.Join(st.Workspace, "svc.pid")
	res := en.run("detached", engine.StepSpec{ID: "svc", Detach: true, Commands: []string{`echo $$ > ` + pidFile + `; exec sleep 60`}})
	require.Equal(t, engine.StepRunning, res.Status)
	pid := readPid(t, pidFile)
	require.True(t, alive(pid))
	again := en.run("detached", engine.StepSpec{ID: "svc", Detach: true, Commands: []string{"exit 1"}})
	require.Equal(t, engine.StepRunning, again.Status, "a repeated start of a detached step answers it runs")

	require.NoError(t, en.eng.Cleanup(t.Context(), "detached"))
	require.False(t, alive(pid))
	en.requireGone("detached")
}

func TestServicesStartAtSetup(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "services", Services: []engine.StepSpec{
		{ID: "db", Name: "database", Commands: []string{`echo $$ > "$PIDFILE"; exec sleep 60`}, Env: map[string]string{"PIDFILE": "db.pid"}},
		{ID: "broken", Entrypoint: []string{"no-such-program-anywhere"}},
	}})
	require.Len(t, st.Services, 2)
	require.Equal(t, engine.ServiceStatus{ID: "db", Name: "database", Running: true}, st.Services[0])
	require.False(t, st.Services[1].Running)
	require.Contains(t, st.Services[1].Error, "no-such-program-anywhere")
	pid := readPid(t, filepath.Join(st.Workspace, "db.pid"))
	require.NoError(t, en.eng.Cleanup(t.Context(), "services"))
	require.False(t, alive(pid))
}

func TestSetupIsIdempotent(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	spec := engine.StageSpec{ID: "again", Files: []engine.File{{Path: "/harness/f", Data: "first"}}}
	first := en.setup(spec)
	require.NoError(t, os.WriteFile(filepath.Join(first.Workspace, "f"), []byte("changed"), 0o600))
	second := en.setup(spec)
	require.True(t, first.Created.Equal(second.Created))
	data, err := os.ReadFile(filepath.Join(first.Workspace, "f"))
	require.NoError(t, err)
	require.Equal(t, "changed", string(data), "a repeated setup of a ready stage does nothing")
	require.NoError(t, en.eng.Cleanup(t.Context(), "again"))
}

func TestFailedSetupAnswersItsErrorAgain(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	blocker := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o600))
	spec := engine.StageSpec{ID: "broken", Files: []engine.File{{Path: filepath.Join(blocker, "below-a-file"), Data: "x"}}}
	_, err := en.eng.Setup(t.Context(), spec)
	require.ErrorIs(t, err, engine.ErrSetupFailed)
	require.ErrorContains(t, err, "below-a-file")
	_, err2 := en.eng.Setup(t.Context(), spec)
	require.ErrorIs(t, err2, engine.ErrSetupFailed)
	require.ErrorContains(t, err2, "below-a-file")
	_, err = en.eng.Execute(t.Context(), "broken", sh("s", "true"))
	require.ErrorIs(t, err, engine.ErrInvalid)
	require.NoError(t, en.eng.Cleanup(t.Context(), "broken"))
	en.requireGone("broken")
}

func TestSetupRedoesAStageLeftInitializing(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	store, err := engine.NewFileStore(en.records)
	require.NoError(t, err)
	// A runner process died right after it stored the record.
	require.NoError(t, store.Create(t.Context(), &engine.Stage{
		Spec:      engine.StageSpec{ID: "crashed"},
		State:     engine.StageInitializing,
		Workspace: filepath.Join(en.stateDir, "stages", engine.StageKey("crashed"), "workspace"),
		Shared:    filepath.Join(en.stateDir, "stages", engine.StageKey("crashed"), "shared"),
	}))
	_, err = en.eng.Execute(t.Context(), "crashed", sh("early", "true"))
	require.ErrorIs(t, err, engine.ErrInvalid, "no step runs before the setup is done")
	st := en.setup(engine.StageSpec{ID: "crashed"})
	require.DirExists(t, st.Workspace)
	res := en.run("crashed", sh("s", "true"))
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.NoError(t, en.eng.Cleanup(t.Context(), "crashed"))
	en.requireGone("crashed")
}

func TestARunningStepIsJoined(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "join"})
	count := filepath.Join(st.Workspace, "count")
	step := engine.StepSpec{ID: "once", Commands: []string{`echo run >> ` + count + `; sleep 0.5; exit 4`}}
	var wg sync.WaitGroup
	results := make([]engine.StepResult, 4)
	for i := range results {
		wg.Go(func() { results[i] = en.run("join", step) })
	}
	wg.Wait()
	for _, r := range results {
		require.Equal(t, results[0], r)
	}
	require.Equal(t, "exit status 4", results[0].Error)
	data, err := os.ReadFile(count)
	require.NoError(t, err)
	require.Equal(t, "run\n", string(data), "the step ran once")

	again := en.run("join", step)
	require.Equal(t, results[0].Error, again.Error, "an ended step answers its stored result")
	require.True(t, results[0].Started.Equal(again.Started))
	data, err = os.ReadFile(count)
	require.NoError(t, err)
	require.Equal(t, "run\n", string(data))
	require.NoError(t, en.eng.Cleanup(t.Context(), "join"))
}

func TestCleanupOfAnUnknownStage(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	leftover := filepath.Join(en.stateDir, "stages", engine.StageKey("ghost"), "workspace")
	require.NoError(t, os.MkdirAll(leftover, 0o700))
	require.NoError(t, en.eng.Cleanup(t.Context(), "ghost"))
	require.NoDirExists(t, filepath.Dir(leftover), "a stage directory without a record is removed")
	require.NoError(t, en.eng.Cleanup(t.Context(), "never-heard-of"))
}

func TestCleanupStopsARunningStep(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	st := en.setup(engine.StageSpec{ID: "cancel"})
	marker := filepath.Join(st.Workspace, "pid")
	done := make(chan engine.StepResult)
	go func() {
		res, _ := en.eng.Execute(context.Background(), "cancel", sh("long", `echo $$ > `+marker+`; sleep 60`))
		done <- res
	}()
	pid := readPid(t, marker)
	require.NoError(t, en.eng.Cleanup(t.Context(), "cancel"))
	res := <-done
	require.Equal(t, engine.StepAborted, res.Status)
	require.Contains(t, res.Error, "the stage is being cleaned up")
	require.False(t, alive(pid))
	en.requireGone("cancel")
}

func TestRestartOnTheSameStateDir(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	a := en.eng
	st, err := a.Setup(t.Context(), engine.StageSpec{ID: "restart", Env: map[string]string{"X": "1"}})
	require.NoError(t, err)
	res, err := a.Execute(t.Context(), "restart", sh("build", `echo built > artifact.txt; echo "VERSION=7" >> "$DRONE_ENV"`))
	require.NoError(t, err)
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)

	// A is dropped without cleanup, as a killed runner would be; B starts on the same directories.
	b := en.engine("runner-1")
	res, err = b.Execute(t.Context(), "restart", engine.StepSpec{ID: "test",
		Commands: []string{`test "$(cat artifact.txt)" = built && test "$VERSION$X" = 71 && OUT=ok`}, OutputVars: []string{"OUT"}})
	require.NoError(t, err)
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Equal(t, map[string]string{"OUT": "ok"}, res.OutputVars)
	again, err := b.Execute(t.Context(), "restart", sh("build", "exit 1"))
	require.NoError(t, err)
	require.Equal(t, engine.StepSuccess, again.Status, "B answers the result A stored")

	require.NoError(t, b.Cleanup(t.Context(), "restart"))
	require.NoDirExists(t, st.Workspace)
	en.eng = b
	en.requireGone("restart")
}

func TestSecretsAreMaskedInStepLogs(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "masked", Secrets: []string{"stage-pass"}, Logs: logstream.Config{Kind: "fake"}})
	res := en.run("masked", engine.StepSpec{ID: "print", LogKey: "logs/print", Secrets: []string{"step-token"},
		Commands: []string{`echo "stage-pass and step-token"; echo "no secret" >&2; printf tail`}})
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Equal(t, []string{
		logstream.Mask + " and " + logstream.Mask + "\n",
		"no secret\n",
		"tail",
	}, en.logs.lines("logs/print"), "the log is uploaded before the result returns")
	require.NoError(t, en.eng.Cleanup(t.Context(), "masked"))
}

func TestLocalLogWithoutALogService(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "local", Secrets: []string{"hush-hush"}})
	res := en.run("local", sh("say", `echo "hush-hush"`))
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	path := filepath.Join(en.stateDir, "stages", engine.StageKey("local"), "logs", "say.log")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, logstream.Mask+"\n", string(data))
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	require.NoError(t, en.eng.Cleanup(t.Context(), "local"))
}

func TestAFailedLogUploadFailsTheStep(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.logs.failUpload = true
	en.setup(engine.StageSpec{ID: "upload", Logs: logstream.Config{Kind: "fake"}})
	res := en.run("upload", engine.StepSpec{ID: "s", LogKey: "k", Commands: []string{"echo hi"}})
	require.Equal(t, engine.StepFailure, res.Status)
	require.Contains(t, res.Error, "log upload failed")
	require.Contains(t, res.Error, "log service unavailable")
	require.NoError(t, en.eng.Cleanup(t.Context(), "upload"))
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	for name, spec := range map[string]engine.StageSpec{
		"no id":              {},
		"duplicate volume":   {ID: "v", Volumes: []engine.Volume{{Name: "a", Temp: &engine.TempVolume{}}, {Name: "a", Temp: &engine.TempVolume{}}}},
		"relative host path": {ID: "v", Volumes: []engine.Volume{{Name: "a", Host: &engine.HostVolume{Path: "rel"}}}},
		"two kinds":          {ID: "v", Volumes: []engine.Volume{{Name: "a", Temp: &engine.TempVolume{}, Host: &engine.HostVolume{Path: "/x"}}}},
		"relative file":      {ID: "v", Files: []engine.File{{Path: "rel.txt"}}},
		"unknown log kind":   {ID: "v", Logs: logstream.Config{Kind: "carrier-pigeon"}},
		"bad env name":       {ID: "v", Env: map[string]string{"A=B": "x"}},
		"relative workspace": {ID: "v", WorkspacePath: "drone/src"},
		"unclean workspace":  {ID: "v", WorkspacePath: "/drone/../src"},
		"root workspace":     {ID: "v", WorkspacePath: "/"},
		"workspace in share": {ID: "v", WorkspacePath: "/tmp/engine/src"},
		"share in workspace": {ID: "v", WorkspacePath: "/tmp"},
	} {
		_, err := en.eng.Setup(t.Context(), spec)
		require.ErrorIs(t, err, engine.ErrInvalid, name)
	}
	stages, err := en.eng.Stages(t.Context())
	require.NoError(t, err)
	require.Empty(t, stages, "nothing is stored for a refused spec")

	en.setup(engine.StageSpec{ID: "v"})
	for name, step := range map[string]engine.StepSpec{
		"no id":             {Commands: []string{"true"}},
		"unknown volume":    {ID: "s", Commands: []string{"true"}, Volumes: []engine.VolumeMount{{Name: "nope", Path: "/x"}}},
		"bad output name":   {ID: "s", Commands: []string{"true"}, OutputVars: []string{"A-B"}},
		"escaping work dir": {ID: "s", Commands: []string{"true"}, WorkingDir: "../../etc"},
		"nothing to run":    {ID: "s"},
	} {
		_, err := en.eng.Execute(t.Context(), "v", step)
		require.ErrorIs(t, err, engine.ErrInvalid, name)
	}
	_, err = en.eng.Execute(t.Context(), "v", engine.StepSpec{ID: "img", Image: "alpine"})
	require.ErrorIs(t, err, engine.ErrNoBackend)
	require.ErrorContains(t, err, "step img needs Docker, which this runner does not have")
	_, err = en.eng.Execute(t.Context(), "unknown", sh("s", "true"))
	require.ErrorIs(t, err, engine.ErrStageNotFound)
	require.NoError(t, en.eng.Cleanup(t.Context(), "v"))
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	t.Parallel()
	store, err := engine.NewFileStore(t.TempDir())
	require.NoError(t, err)
	h := host.New(host.Options{})
	for name, o := range map[string]engine.Options{
		"no store":           {Host: h, RunnerID: "r", StateDir: t.TempDir()},
		"no host":            {Store: store, RunnerID: "r", StateDir: t.TempDir()},
		"no runner":          {Store: store, Host: h, StateDir: t.TempDir()},
		"relative state dir": {Store: store, Host: h, RunnerID: "r", StateDir: "state"},
	} {
		_, err := engine.New(o)
		require.Error(t, err, name)
	}
}

// fakeDocker stands in for the Docker backend where only the engine's decisions are tested.
type fakeDocker struct {
	mu        sync.Mutex
	runs      []engine.Run
	setups    []string
	destroyed []string
	exitCode  int
	startErr  error
}

func withDocker(d *fakeDocker) envOption {
	return func(o *engine.Options) { o.Docker = d }
}

func (d *fakeDocker) Name() string { return "docker" }

func (d *fakeDocker) Paths(st *engine.Stage) engine.StepPaths {
	return engine.StepPaths{Workspace: st.Spec.ContainerWorkspacePath(), Shared: engine.ContainerShared}
}

func (d *fakeDocker) SetupStage(_ context.Context, st *engine.Stage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setups = append(d.setups, st.Spec.ID)
	st.Network = "net-" + st.Spec.ID
	return nil
}

func (d *fakeDocker) Start(_ context.Context, r engine.Run) (engine.Process, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.startErr != nil {
		return nil, d.startErr
	}
	d.runs = append(d.runs, r)
	return exited{code: d.exitCode}, nil
}

func (d *fakeDocker) DestroyStage(_ context.Context, stageID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.destroyed = append(d.destroyed, stageID)
	return nil
}

type exited struct{ code int }

func (p exited) Wait(context.Context) (engine.Exit, error) {
	return engine.Exit{Code: p.code, OOMKilled: p.code == 137}, nil
}
func (p exited) Stop(context.Context, time.Duration) error { return nil }

func TestContainerStepsGoToDocker(t *testing.T) {
	t.Parallel()
	d := &fakeDocker{}
	en := newEnv(t, withDocker(d))
	st := en.setup(engine.StageSpec{ID: "dock", Env: map[string]string{"S": "1"}})
	require.Equal(t, "net-dock", st.Network, "the network the backend created is stored")
	require.Equal(t, []string{"dock"}, d.setups)

	res := en.run("dock", sh("host-step", `echo "EXPORTED=yes" >> "$DRONE_ENV"`))
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	res = en.run("dock", engine.StepSpec{ID: "c1", Image: "golang", Entrypoint: []string{"sh", "-c"}, Commands: []string{"go test"},
		OutputVars: []string{"V"}, WorkingDir: "src"})
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Len(t, d.runs, 1)
	r := d.runs[0]
	require.Equal(t, "/harness/src", r.WorkingDir)
	require.DirExists(t, filepath.Join(st.Workspace, "src"), "a working directory in the workspace is created")
	require.Equal(t, "/tmp/engine/c1-output.env", r.Env["DRONE_OUTPUT"])
	require.Equal(t, "/tmp/engine/c1-output.env", r.Env["HARNESS_OUTPUT_FILE"])
	require.Equal(t, "/tmp/engine/c1-output-secrets.env", r.Env["HARNESS_OUTPUT_SECRET_FILE"])
	require.Equal(t, "/tmp/engine/c1-export.env", r.Env["DRONE_ENV"])
	require.Equal(t, "/tmp/engine/c1-artifact", r.Env["PLUGIN_ARTIFACT_FILE"])
	require.Equal(t, "1", r.Env["S"])
	require.NotContains(t, r.Env, "EXPORTED", "exports go to host steps only")
	require.True(t, strings.HasPrefix(r.Step.Commands[0], "go test\n"))
	require.Contains(t, r.Step.Commands[0], `'/tmp/engine/c1-output.env'`)

	res = en.run("dock", engine.StepSpec{ID: "oom", Image: "x"})
	require.Equal(t, engine.StepSuccess, res.Status, "a plugin runs its image's entrypoint")
	d.exitCode = 137
	res = en.run("dock", engine.StepSpec{ID: "oom2", Image: "x"})
	require.Equal(t, engine.StepFailure, res.Status)
	require.Equal(t, "oom killed", res.Error)

	d.startErr = errors.New("image x:nope not found")
	res = en.run("dock", engine.StepSpec{ID: "missing", Image: "x:nope"})
	require.Equal(t, engine.StepError, res.Status)
	require.Equal(t, "image x:nope not found", res.Error)
	d.startErr = engine.ErrNotAllowed
	_, err := en.eng.Execute(t.Context(), "dock", engine.StepSpec{ID: "priv", Image: "x", Privileged: true})
	require.ErrorIs(t, err, engine.ErrNotAllowed)

	require.NoError(t, en.eng.Cleanup(t.Context(), "dock"))
	require.NoError(t, en.eng.Cleanup(t.Context(), "unknown-to-all"))
	require.Equal(t, []string{"dock", "unknown-to-all"}, d.destroyed, "every backend sweeps, known stage or not")
}

// A stage that chooses where its container steps see the workspace: they run there, and a
// working directory or a file under it lands in the workspace's host directory.
func TestAStageChoosesItsContainerWorkspace(t *testing.T) {
	t.Parallel()
	d := &fakeDocker{}
	en := newEnv(t, withDocker(d))
	st := en.setup(engine.StageSpec{ID: "ws", WorkspacePath: "/drone/src", Files: []engine.File{{Path: "/drone/src/.keep", Data: "x"}}})
	require.Equal(t, "/drone/src", st.Spec.ContainerWorkspacePath())
	require.FileExists(t, filepath.Join(st.Workspace, ".keep"), "a file under the stage's workspace path lands in the workspace")

	for _, step := range []engine.StepSpec{
		{ID: "c1", Image: "x", Commands: []string{"pwd"}, Entrypoint: []string{"sh", "-c"}},
		{ID: "c2", Image: "x", Commands: []string{"pwd"}, Entrypoint: []string{"sh", "-c"}, WorkingDir: "sub"},
	} {
		res := en.run("ws", step)
		require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	}
	require.Len(t, d.runs, 2)
	require.Equal(t, "/drone/src", d.runs[0].WorkingDir)
	require.Equal(t, "/drone/src/sub", d.runs[1].WorkingDir)
	require.DirExists(t, filepath.Join(st.Workspace, "sub"))

	other := en.setup(engine.StageSpec{ID: "default-ws"})
	require.Equal(t, engine.ContainerWorkspace, other.Spec.ContainerWorkspacePath(), "a stage that says nothing keeps /harness")
	res := en.run("default-ws", engine.StepSpec{ID: "c", Image: "x"})
	require.Equal(t, engine.StepSuccess, res.Status, res.Error)
	require.Equal(t, "/harness", d.runs[2].WorkingDir)
	require.NoError(t, en.eng.Cleanup(t.Context(), "ws"))
	require.NoError(t, en.eng.Cleanup(t.Context(), "default-ws"))
}

func TestStageRecordIsJSON(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "json", Secrets: []string{"x"}})
	data, err := os.ReadFile(filepath.Join(en.records, engine.StageKey("json")+".json"))
	require.NoError(t, err)
	var st engine.Stage
	require.NoError(t, json.Unmarshal(data, &st))
	require.Equal(t, "runner-1", st.Runner)
	require.Equal(t, engine.StageReady, st.State)
	require.NoError(t, en.eng.Cleanup(t.Context(), "json"))
}

func TestCleanupRemovesOnlyEmptyDirectoriesOutsideTheStage(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	outside := t.TempDir()
	empty, used := filepath.Join(outside, "empty"), filepath.Join(outside, "used")
	st := en.setup(engine.StageSpec{ID: "dirs", Files: []engine.File{
		{Path: empty, IsDir: true},
		{Path: used, IsDir: true},
		{Path: "/harness/inside", IsDir: true},
	}})
	require.NoError(t, os.WriteFile(filepath.Join(used, "keep.txt"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(st.Workspace, "inside", "gone.txt"), []byte("x"), 0o600))
	require.NoError(t, en.eng.Cleanup(t.Context(), "dirs"))
	require.NoDirExists(t, empty)
	require.FileExists(t, filepath.Join(used, "keep.txt"))
	en.requireGone("dirs")
}

func TestSetupWritesItsOwnLog(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	en.setup(engine.StageSpec{ID: "setup-log", LogKey: "stage/setup", Logs: logstream.Config{Kind: "fake"},
		Services: []engine.StepSpec{{ID: "svc", Commands: []string{"exec sleep 60"}}}})
	lines := en.logs.lines("stage/setup")
	require.Equal(t, "Setting up stage setup-log\n", lines[0])
	require.Contains(t, lines, "Started service svc\n")
	require.Equal(t, "Stage setup-log is ready\n", lines[len(lines)-1])
	require.NoError(t, en.eng.Cleanup(t.Context(), "setup-log"))
}
