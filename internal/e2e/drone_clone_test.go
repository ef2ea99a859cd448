package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/dockertest"
	"github.com/dlite-dev/dlite/mockmanager"
)

// gitIn runs git in dir as a user of its own (HOME is dir) and returns its output.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Octo Cat",
		"GIT_AUTHOR_EMAIL=octocat@example.com", "GIT_COMMITTER_NAME=Octo Cat", "GIT_COMMITTER_EMAIL=octocat@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

// An exec pipeline clones the build's commit before its steps: a repository made here, its
// branch a commit ahead of the build's, reached through the repository's git_http_url. The step
// sees the file as the build's commit has it, on the build's branch, and the clone step's log
// reaches the server like any step's.
func TestDroneExecClone(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("the clone tests need git (.ci/test-deps installs it): %v", err)
	}
	repo := t.TempDir()
	gitIn(t, repo, "init", "-q", "-b", "main")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "README"), []byte("hello\n"), 0o644))
	gitIn(t, repo, "add", "README")
	gitIn(t, repo, "commit", "-q", "-m", "start")
	gitIn(t, repo, "checkout", "-q", "-b", "feature")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "committed.txt"), []byte("as the build's commit has it\n"), 0o644))
	gitIn(t, repo, "add", "committed.txt")
	gitIn(t, repo, "commit", "-q", "-m", "add committed.txt")
	sha := gitIn(t, repo, "rev-parse", "HEAD")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "committed.txt"), []byte("changed after the build's commit\n"), 0o644))
	gitIn(t, repo, "commit", "-q", "-am", "change it")
	gitIn(t, repo, "checkout", "-q", "main")

	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-clone", t.TempDir(), "exec", "DLITE_DOCKER=off"))
	yaml := `kind: pipeline
type: exec
name: default
steps:
- name: show
  commands:
  - cat committed.txt
  - git rev-parse HEAD
  - git rev-parse --abbrev-ref HEAD
`
	b, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: yaml, Stages: []mockmanager.NewStage{{Name: "default", Type: "exec"}},
		Repo: mockmanager.NewRepo{Name: "cloned", GitHttpUrl: "file://" + repo}, Ref: "refs/heads/feature", After: sha})
	require.NoError(t, err)
	st := waitDrone(t, ds, b.Build.Id)
	require.Equal(t, droneapi.Status("success"), st.Stage.Status, "%+v", st.Stage)
	require.Len(t, st.Steps, 2)
	clone, show := st.Steps[0], st.Steps[1]
	require.Equal(t, "clone", clone.Step.Name)
	require.Equal(t, 1, clone.Step.Number)
	require.Equal(t, droneapi.Status("success"), clone.Step.Status)
	require.Equal(t, []string{"clone"}, show.Step.DependsOn)

	cloneLog := droneLog(t, clone)
	require.Contains(t, cloneLog, "+ git init -q\n")
	require.Contains(t, cloneLog, "+ git remote add origin file://"+repo+"\n")
	require.Contains(t, cloneLog, "+ git fetch origin refs/heads/feature\n")
	require.Contains(t, cloneLog, "+ git checkout -q -f -B feature "+sha+"\n")
	require.NotContains(t, cloneLog, "mock-clone-token", "the clone credentials are masked")
	require.Equal(t, fmt.Sprintf("+ cat committed.txt\nas the build's commit has it\n+ git rev-parse HEAD\n%s\n+ git rev-parse --abbrev-ref HEAD\nfeature\n", sha),
		droneLog(t, show))
}

// A docker pipeline clones in a container of DRONE_RUNNER_CLONE_IMAGE, with the clone script in
// place of the image's entrypoint. The image here has a shell but no git: the clone step fails
// saying so, its log on the server, and the stage fails as with any failing step, its later
// steps skipped unless they run on failure.
func TestDroneDockerCloneImage(t *testing.T) {
	t.Parallel()
	img := dockertest.Image(t)
	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
	// Stages no runner takes come first: the stage under test is then numbered 3, and its
	// engine stage id (and container names) differ from those of the other Docker tests, which
	// run beside it on the same daemon.
	for range 2 {
		_, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: "kind: pipeline\nname: default\n",
			Stages: []mockmanager.NewStage{{Name: "default", Type: "nobody-takes-it"}}})
		require.NoError(t, err)
	}
	startProc(t, droneRunnerEnv(ds.URL, ds.Secret(), "drone-docker-clone", t.TempDir(), "docker", "DLITE_DOCKER=on",
		"DRONE_RUNNER_CLONE_IMAGE="+img))
	yaml := fmt.Sprintf(`kind: pipeline
type: docker
name: default
steps:
- name: build
  image: %[1]s
  pull: never
  commands: [echo never]
- name: on-failure
  image: %[1]s
  pull: never
  commands: [echo the clone failed]
  when:
    status: [failure]
`, img)
	id := droneBuild(t, ds, yaml, "docker")
	b, err := ds.Build(id)
	require.NoError(t, err)
	require.Equal(t, int64(3), b.Stages[0].Stage.Id)
	st := waitDrone(t, ds, id)
	require.Equal(t, droneapi.Status("failure"), st.Stage.Status, "%+v", st.Stage)
	steps := droneSteps(st)
	clone := steps["clone"]
	require.Equal(t, 1, clone.Step.Number)
	require.Equal(t, img, clone.Step.Image)
	require.Equal(t, droneapi.Status("failure"), clone.Step.Status)
	require.Equal(t, 127, clone.Step.ExitCode)
	require.Contains(t, droneLog(t, clone), "git is not installed where the clone step runs")
	require.Equal(t, droneapi.Status("skipped"), steps["build"].Step.Status)
	require.Equal(t, droneapi.Status("success"), steps["on-failure"].Step.Status)
	require.Contains(t, droneLog(t, steps["on-failure"]), "the clone failed\n")
}
