package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

func names(plan *pipeline.Plan) []string {
	var out []string
	for _, ps := range plan.Steps {
		out = append(out, ps.Name)
	}
	return out
}

func TestPlanStartsWithTheCloneStep(t *testing.T) {
	t.Parallel()
	f := facts()
	f.Netrc = gen.Netrc{Machine: "git.example.com", Login: "octocat", Password: "clone-password"}
	f.CloneImage = "drone/git:latest"
	yaml := "kind: pipeline\ntype: exec\nsteps:\n- name: build\n  commands: [make]\n- name: test\n  commands: [make test]\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), f)
	require.Equal(t, []string{"clone", "build", "test"}, names(plan))

	clone := plan.Steps[0]
	require.Equal(t, 1, clone.Number)
	require.Empty(t, clone.DependsOn)
	require.Empty(t, clone.Image, "an exec pipeline clones on the host")
	require.Empty(t, clone.Error)
	require.False(t, clone.ErrIgnore, "a failed clone fails the stage")
	require.Equal(t, pipeline.Condition{Include: []string{"success"}}, clone.RunOn)
	require.Equal(t, &pipeline.CloneSpec{Remote: "https://git.example.com/acme/app.git", Ref: "refs/heads/main",
		Commit: "abc123", Branch: "main"}, clone.Clone)
	for k, v := range map[string]string{
		"DRONE_STEP_NAME": "clone", "DRONE_STEP_NUMBER": "1", "DRONE_COMMIT_SHA": "abc123",
		"DRONE_REMOTE_URL": "https://git.example.com/acme/app.git", "DRONE_NETRC_MACHINE": "git.example.com",
		"DRONE_NETRC_USERNAME": "octocat", "DRONE_NETRC_PASSWORD": "clone-password", "GIT_TERMINAL_PROMPT": "0",
	} {
		require.Equal(t, v, clone.Env[k], k)
	}
	require.NotContains(t, clone.Env, "GIT_SSL_NO_VERIFY")
	require.Equal(t, []string{"clone-password"}, plan.Secrets, "the clone password is masked in every log")

	build, test := plan.Steps[1], plan.Steps[2]
	require.Equal(t, 2, build.Number)
	require.Equal(t, "2", build.Env["DRONE_STEP_NUMBER"])
	require.Equal(t, []string{"clone"}, build.DependsOn, "the first step waits for the clone")
	require.Equal(t, 3, test.Number)
	require.Equal(t, []string{"build"}, test.DependsOn, "the next waits for the one before, as without a clone")
	require.Nil(t, build.Clone)
	require.NotContains(t, build.Env, "DRONE_NETRC_PASSWORD", "only the clone step gets the credentials")

	wire := plan.WireSteps(9)
	require.Equal(t, gen.Step{Number: 1, Name: "clone", StepId: 9, Status: gen.StatusPending}, wire[0])
	require.Equal(t, []string{"clone"}, wire[1].DependsOn)

	docker := pipeline.NewPlan(mustParse(t, "kind: pipeline\nsteps:\n- name: a\n  image: alpine\n", "default"), f)
	require.Equal(t, "drone/git:latest", docker.Steps[0].Image, "a docker pipeline clones in the clone image")
	require.Equal(t, "drone/git:latest", docker.WireSteps(9)[0].Image)
}

func TestEveryStepRunsAfterTheClone(t *testing.T) {
	t.Parallel()
	yaml := `kind: pipeline
type: exec
steps:
- name: lint
  commands: [true]
- name: unit
  commands: [true]
  depends_on: [clone]
- name: docs
  commands: [true]
  when: {branch: dev}
- name: site
  commands: [true]
  depends_on: [docs]
- name: package
  commands: [true]
  depends_on: [lint, unit]
`
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	require.Equal(t, []string{"clone", "lint", "unit", "site", "package"}, names(plan))
	deps := map[string][]string{}
	for _, ps := range plan.Steps {
		deps[ps.Name] = ps.DependsOn
	}
	require.Equal(t, map[string][]string{
		"clone":   nil,
		"lint":    {"clone"},
		"unit":    {"clone"},
		"site":    {"clone"},
		"package": {"lint", "unit"},
	}, deps, "steps that wait for nothing else (site's dependency is not sent) wait for the clone")

	s := pipeline.NewScheduler(plan)
	require.Equal(t, [][]string{{"clone"}, {"lint", "unit", "site"}, {"package"}}, run(t, s, nil))
}

func TestCloneSettings(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nclone:\n  depth: 50\n  skip_verify: true\nenvironment:\n  HTTPS_PROXY: http://proxy:3128\nsteps:\n- name: a\n  commands: [true]\n"
	clone := pipeline.NewPlan(mustParse(t, yaml, "default"), facts()).Steps[0]
	require.Equal(t, 50, clone.Clone.Depth)
	require.Equal(t, "true", clone.Env["GIT_SSL_NO_VERIFY"])
	require.Equal(t, "http://proxy:3128", clone.Env["HTTPS_PROXY"], "the pipeline's environment reaches the clone")
	require.NotContains(t, clone.Env, "DRONE_NETRC_MACHINE", "no credentials, no netrc")

	plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nclone:\n  disable: true\nsteps:\n- name: a\n  commands: [true]\n", "default"), facts())
	require.Equal(t, []string{"a"}, names(plan))
	require.Equal(t, 1, plan.Steps[0].Number)
	require.Empty(t, plan.Steps[0].DependsOn)

	f := facts()
	f.Netrc = gen.Netrc{Machine: "git.example.com", Login: "octocat", Password: "clone-password"}
	require.Empty(t, pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n", "default"), f).Secrets,
		"without a clone the credentials are not read")

	missing := "kind: pipeline\ntype: exec\nenvironment:\n  T: {from_secret: nope}\nsteps:\n- name: a\n"
	clone = pipeline.NewPlan(mustParse(t, missing, "default"), facts()).Steps[0]
	require.Contains(t, clone.Error, `secret "nope" is not available`, "a pipeline secret that is missing stops the clone too")
}

func TestCloneFollowsTheBuildsRef(t *testing.T) {
	t.Parallel()
	const zero = "0000000000000000000000000000000000000000"
	tests := []struct {
		name        string
		ref, target string
		after       string
		want        pipeline.CloneSpec
	}{
		{"branch", "refs/heads/release/1.x", "release/1.x", "f00", pipeline.CloneSpec{Ref: "refs/heads/release/1.x", Commit: "f00", Branch: "release/1.x"}},
		{"tag", "refs/tags/v1.2.3", "", "f00", pipeline.CloneSpec{Ref: "refs/tags/v1.2.3", Commit: "f00", Tag: "v1.2.3"}},
		{"pull request", "refs/pull/17/head", "main", "f00", pipeline.CloneSpec{Ref: "refs/pull/17/head", Commit: "f00"}},
		{"no commit", "refs/heads/main", "main", zero, pipeline.CloneSpec{Ref: "refs/heads/main", Branch: "main"}},
		{"no ref", "", "dev", "", pipeline.CloneSpec{Ref: "refs/heads/dev", Branch: "dev"}},
		{"nothing at all", "", "", "", pipeline.CloneSpec{Ref: "HEAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := facts()
			f.Build.Ref, f.Build.Target, f.Build.After = tt.ref, tt.target, tt.after
			want := tt.want
			want.Remote = f.Repo.GitHttpUrl
			plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nsteps:\n- name: a\n", "default"), f)
			require.Equal(t, &want, plan.Steps[0].Clone)
		})
	}
}

// A clone that fails fails the stage like any step: the steps after it are skipped, but those
// that run on failure run.
func TestAFailedCloneFailsTheStage(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nsteps:\n- name: build\n- name: notify\n  when: {status: failure}\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	s := pipeline.NewScheduler(plan)
	require.Equal(t, [][]string{{"clone"}, {"notify"}}, run(t, s, map[string]pipeline.Result{"clone": {ExitCode: 128}}))
	require.Equal(t, map[string]gen.Status{"clone": gen.StatusFailure, "build": gen.StatusSkipped, "notify": gen.StatusSuccess},
		statuses(s, plan))
	status, code := s.Outcome()
	require.Equal(t, gen.StatusFailure, status)
	require.Equal(t, 0, code)
}

func TestCheckKnowsTheCloneStep(t *testing.T) {
	t.Parallel()
	const head = "kind: pipeline\ntype: exec\nname: p\n"
	for name, tt := range map[string]struct{ yaml, says string }{
		"a step named clone": {head + "steps:\n- name: clone\n  commands: [git clone x]\n",
			`a step is named "clone", the name of the clone step the runner adds`},
		"a negative depth": {head + "clone:\n  depth: -1\nsteps:\n- name: a\n", "clone.depth is -1"},
		"depends on a disabled clone": {head + "clone:\n  disable: true\nsteps:\n- name: a\n  depends_on: [clone]\n",
			`step "a" depends on "clone", which is not a step of the pipeline`},
	} {
		_, err := pipeline.Parse([]byte(tt.yaml))
		require.ErrorIs(t, err, pipeline.ErrInvalid, name)
		require.ErrorContains(t, err, tt.says, name)
	}
	_, err := pipeline.Parse([]byte(head + "clone:\n  disable: true\nsteps:\n- name: clone\n  commands: [git clone x]\n"))
	require.NoError(t, err, "with the clone disabled, a step of the pipeline may clone under that name")
}
