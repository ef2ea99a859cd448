package drone_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/mockmanager"
	tasksdrone "github.com/dlite-dev/dlite/tasks/drone"
)

// The mock Drone server's clone credentials.
const mockNetrcPassword = "mock-clone-token"

// newBuild is a build of yaml for the commit after on ref.
func newBuild(yaml, ref, after string) mockmanager.NewBuild {
	return mockmanager.NewBuild{Yaml: yaml, Ref: ref, After: after}
}

// fakeGit puts a git on a directory of its own that says how it was called and, when it fetches,
// shows its HOME with the permissions and the netrc there and writes HOME's path to record. The
// clone step meets it first on a PATH that starts with the directory it returns.
func fakeGit(t *testing.T, record string) string {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
echo "fake git $*"
if [ "$1" = fetch ]; then
  echo "home $HOME"
  ls -ld "$HOME" | cut -c1-10
  cat "$HOME/.netrc"
  echo "$HOME" > '` + record + `'
fi
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "git"), []byte(script), 0o755))
	return dir
}

// The clone step on the host: it comes first, runs git with a HOME of its own that holds the
// credentials while it runs and not after, and the password never shows in its log.
func TestExecCloneKeepsTheCredentialsToItself(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	record := filepath.Join(t.TempDir(), "clone-home")
	yaml := `kind: pipeline
type: exec
name: default
environment:
  PATH: ` + fakeGit(t, record) + ":" + os.Getenv("PATH") + `
steps:
- name: after
  commands:
  - test ! -e "$(cat ` + record + `)/.netrc"
  - echo "home $HOME"
`
	task, id := r.takeBuild(t, newBuild(yaml, "refs/heads/main", "0123abc"))
	st := r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("success"), st.Stage.Status, "%+v", st.Stage)
	require.Len(t, st.Steps, 2)
	clone, after := st.Steps[0], st.Steps[1]
	require.Equal(t, "clone", clone.Step.Name)
	require.Equal(t, 1, clone.Step.Number)
	require.Equal(t, drone.Status("success"), clone.Step.Status)
	require.Equal(t, 2, after.Step.Number)
	require.Equal(t, []string{"clone"}, after.Step.DependsOn)
	require.Equal(t, drone.Status("success"), after.Step.Status, "the netrc is gone once the clone ends:\n%s", logText(t, after))

	log := logText(t, clone)
	require.Contains(t, log, "+ git fetch origin refs/heads/main\nfake git fetch origin refs/heads/main\n")
	require.Contains(t, log, "fake git checkout -q -f -B main 0123abc\n")
	require.Contains(t, log, "drwx------\nmachine git.example.com\nlogin octocat\npassword ****", "a netrc in a private HOME")
	require.NotContains(t, log, mockNetrcPassword, "the password is masked")
	home, err := os.ReadFile(record)
	require.NoError(t, err)
	cloneHome := strings.TrimSpace(string(home))
	require.True(t, strings.HasSuffix(cloneHome, "/clone-home"), cloneHome)
	require.NotEqual(t, os.Getenv("HOME"), cloneHome)
	require.NotContains(t, logText(t, after), "home "+cloneHome, "the other steps keep the runner's HOME")
	require.NoDirExists(t, cloneHome, "the stage's cleanup removes it")
}

// Without git on the host the clone step ends in error saying so, and the stage with it.
func TestExecCloneWithoutGit(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	yaml := "kind: pipeline\ntype: exec\nname: default\nenvironment:\n  PATH: " + t.TempDir() + "\nsteps:\n- name: build\n  commands: [echo never]\n"
	task, id := r.takeBuild(t, newBuild(yaml, "refs/heads/main", "0123abc"))
	st := r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("error"), st.Stage.Status)
	byName := steps(st)
	require.Equal(t, drone.Status("error"), byName["clone"].Step.Status)
	require.Equal(t, 255, byName["clone"].Step.ExitCode)
	require.Contains(t, byName["clone"].Step.Error, "git is not installed on the runner's host")
	require.Equal(t, drone.Status("skipped"), byName["build"].Step.Status)
}

// recorder is the engine with its calls recorded; container steps succeed without running, so
// a docker stage's specs can be read without Docker.
type recorder struct {
	tasksdrone.Engine
	mu     sync.Mutex
	stages []engine.StageSpec
	steps  []engine.StepSpec
}

func (r *recorder) Setup(ctx context.Context, spec engine.StageSpec) (*engine.Stage, error) {
	r.mu.Lock()
	r.stages = append(r.stages, spec)
	r.mu.Unlock()
	return r.Engine.Setup(ctx, spec)
}

func (r *recorder) Execute(ctx context.Context, stageID string, spec engine.StepSpec) (engine.StepResult, error) {
	r.mu.Lock()
	r.steps = append(r.steps, spec)
	r.mu.Unlock()
	if spec.Image != "" {
		return engine.StepResult{Status: engine.StepSuccess}, nil
	}
	return r.Engine.Execute(ctx, stageID, spec)
}

// A docker pipeline clones in a container of the clone image, pulled when missing, with the
// script in place of its entrypoint; its steps find the workspace under /drone.
func TestDockerCloneRunsInTheCloneImage(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	r := newRig(t, func(o *tasksdrone.Options) {
		rec.Engine = o.Engine
		o.Engine = rec
		o.CloneImage = "registry.example/git:2"
	})
	yaml := "kind: pipeline\ntype: docker\nname: default\nworkspace:\n  path: go/src/app\nclone:\n  depth: 3\nsteps:\n- name: build\n  image: golang\n  commands: [go build]\n"
	task, id := r.takeBuild(t, newBuild(yaml, "refs/tags/v1", "0123abc"))
	st := r.deliver(t, id, r.run(t.Context(), t, id, task))
	require.Equal(t, drone.Status("success"), st.Stage.Status, "%+v", st.Stage)
	require.Equal(t, "registry.example/git:2", st.Steps[0].Step.Image, "the server sees the clone image")

	require.Len(t, rec.stages, 1)
	require.Equal(t, "/drone/go/src/app", rec.stages[0].WorkspacePath)
	require.Contains(t, rec.stages[0].Secrets, mockNetrcPassword, "the clone password is masked in the stage's logs")
	require.Len(t, rec.steps, 2)
	clone, build := rec.steps[0], rec.steps[1]
	require.Equal(t, "clone", clone.Name)
	require.Equal(t, "registry.example/git:2", clone.Image)
	require.Equal(t, engine.PullIfNotPresent, clone.Pull)
	require.Equal(t, []string{"/bin/sh", "-c"}, clone.Entrypoint)
	require.Len(t, clone.Commands, 1)
	require.Contains(t, clone.Commands[0], "git 'fetch' '--depth=3' 'origin' '+refs/tags/v1:refs/tags/v1'\n")
	require.Equal(t, "/tmp/dlite-clone-home", clone.Env["HOME"], "a HOME in the clone's own container")
	require.Equal(t, mockNetrcPassword, clone.Env["DRONE_NETRC_PASSWORD"])
	require.Equal(t, "/drone/go/src/app", build.Env["DRONE_WORKSPACE"])
	require.NotContains(t, build.Env, "HOME")
}
