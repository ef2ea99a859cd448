package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

func facts() pipeline.Facts {
	return pipeline.Facts{
		Repo: gen.Repo{Slug: "acme/app", Namespace: "acme", Name: "app", DefaultBranch: "main",
			GitHttpUrl: "https://git.example.com/acme/app.git", Visibility: "public", Scm: "git"},
		Build: gen.Build{Number: 42, Event: "push", Ref: "refs/heads/main", Target: "main", Source: "main",
			After: "abc123", Before: "000000", Message: "fix it", AuthorLogin: "octocat", Trigger: "@hook",
			Params: map[string]string{"CUSTOM": "yes", "DRONE_BUILD_NUMBER": "overridden?"}},
		Stage:   gen.Stage{Name: "build", Number: 1, Machine: "runner-1", Os: "linux", Arch: "amd64"},
		System:  gen.System{Proto: "https", Host: "drone.example.com", Link: "https://drone.example.com"},
		Secrets: []gen.Secret{{Name: "token", Data: "t0ken"}, {Name: "docker_password", Data: "longer-password"}},
	}
}

func mustParse(t *testing.T, yaml, name string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.ParseStage([]byte(yaml), name)
	require.NoError(t, err)
	return p
}

func TestPlanResolvesTheEnvironment(t *testing.T) {
	t.Parallel()
	plan := pipeline.NewPlan(mustParse(t, multi, "build"), facts())
	require.Len(t, plan.Steps, 2)
	require.Empty(t, plan.Excluded)
	require.Equal(t, "go/src/app", plan.Workspace, "an exec workspace stays relative to the stage's directory")

	test := plan.Steps[0]
	require.Equal(t, 1, test.Number)
	require.True(t, test.ErrIgnore)
	require.Empty(t, test.Error)
	for k, v := range map[string]string{
		"CI": "true", "DRONE": "true", "DRONE_BRANCH": "main", "DRONE_COMMIT": "abc123", "DRONE_COMMIT_SHA": "abc123",
		"DRONE_BUILD_NUMBER": "42", "DRONE_BUILD_EVENT": "push", "DRONE_BUILD_LINK": "https://drone.example.com/acme/app/42",
		"DRONE_REPO": "acme/app", "DRONE_REPO_NAME": "app", "DRONE_REPO_OWNER": "acme", "DRONE_REPO_BRANCH": "main",
		"DRONE_STAGE_NAME": "build", "DRONE_STAGE_TYPE": "exec", "DRONE_STAGE_MACHINE": "runner-1",
		"DRONE_STEP_NAME": "test", "DRONE_STEP_NUMBER": "1", "DRONE_SYSTEM_HOST": "drone.example.com",
		"DRONE_COMMIT_MESSAGE": "fix it", "CUSTOM": "yes",
		"GOFLAGS": "-mod=mod", "RETRIES": "3", "TOKEN": "t0ken", "VERBOSE": "true",
	} {
		require.Equal(t, v, test.Env[k], k)
	}
	require.NotContains(t, test.Env, "DRONE_WORKSPACE", "an exec runner sets it")
	require.NotContains(t, test.Env, "DRONE_TAG")

	publish := plan.Steps[1]
	require.Equal(t, []string{"test"}, publish.DependsOn)
	require.True(t, publish.Detach)
	require.Equal(t, "acme/app", publish.Env["PLUGIN_REPO"])
	require.Equal(t, "latest,1.0", publish.Env["PLUGIN_TAGS"])
	require.Equal(t, "longer-password", publish.Env["PLUGIN_PASSWORD"])
	require.Equal(t, []string{"longer-password", "t0ken"}, plan.Secrets, "longest first, for masking")
}

func TestPlanDockerWorkspaceAndRefs(t *testing.T) {
	t.Parallel()
	f := facts()
	f.Build.Ref, f.Build.Event = "refs/tags/v1.2.3", "tag"
	plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\nclone: {disable: true}\nsteps:\n- name: a\n  image: alpine\n", "default"), f)
	env := plan.Steps[0].Env
	require.Equal(t, "/drone/src", plan.Workspace)
	require.Equal(t, "/drone/src", env["DRONE_WORKSPACE"])
	require.Equal(t, "/drone", env["DRONE_WORKSPACE_BASE"])
	require.Equal(t, "src", env["DRONE_WORKSPACE_PATH"])
	require.Equal(t, "v1.2.3", env["DRONE_TAG"])

	plan = pipeline.NewPlan(mustParse(t, "kind: pipeline\nworkspace:\n  path: go/src/app\nsteps:\n- name: a\n  image: alpine\n", "default"), f)
	env = plan.Steps[0].Env
	require.Equal(t, "/drone/go/src/app", plan.Workspace, "a relative workspace path lies under /drone")
	require.Equal(t, "/drone/go/src/app", env["DRONE_WORKSPACE"])
	require.Equal(t, "/drone", env["DRONE_WORKSPACE_BASE"])
	require.Equal(t, "go/src/app", env["DRONE_WORKSPACE_PATH"])

	f.Build.Ref, f.Build.Event, f.Build.Title = "refs/pull/17/head", "pull_request", "Add it"
	plan = pipeline.NewPlan(mustParse(t, "kind: pipeline\nworkspace:\n  path: /work\nsteps:\n- name: a\n  image: alpine\n", "default"), f)
	env = plan.Steps[0].Env
	require.Equal(t, "/work", plan.Workspace, "an absolute workspace path is kept")
	require.Equal(t, "/work", env["DRONE_WORKSPACE"])
	require.Equal(t, "/work", env["DRONE_WORKSPACE_BASE"], "an absolute workspace path is its own base")
	require.Empty(t, env["DRONE_WORKSPACE_PATH"])
	require.Equal(t, "17", env["DRONE_PULL_REQUEST"])
	require.Equal(t, "Add it", env["DRONE_PULL_REQUEST_TITLE"])
}

func TestPlanReportsMissingSecrets(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n  environment:\n    X:\n      from_secret: nope\n- name: b\n  commands: [true]\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	require.Equal(t, `secret "nope" is not available (read by environment X)`, plan.Steps[0].Error)
	require.Empty(t, plan.Steps[1].Error)
	require.Empty(t, plan.Secrets)
}

func TestPlanSettings(t *testing.T) {
	t.Parallel()
	yaml := `kind: pipeline
type: exec
clone: {disable: true}
steps:
- name: a
  settings:
    string: text
    int: 3
    float: 1.5
    bool: false
    list: [a, 2, true]
    map: {k: v, n: [1, 2]}
    list_of_maps: [{a: 1}]
    camelCase: x
    dashed-name.dotted: y
    nothing:
`
	env := pipeline.NewPlan(mustParse(t, yaml, "default"), facts()).Steps[0].Env
	for k, v := range map[string]string{
		"PLUGIN_STRING":             "text",
		"PLUGIN_INT":                "3",
		"PLUGIN_FLOAT":              "1.5",
		"PLUGIN_BOOL":               "false",
		"PLUGIN_LIST":               "a,2,true",
		"PLUGIN_MAP":                `{"k":"v","n":[1,2]}`,
		"PLUGIN_LIST_OF_MAPS":       `[{"a":1}]`,
		"PLUGIN_CAMELCASE":          "x",
		"PLUGIN_DASHED_NAME_DOTTED": "y",
		"PLUGIN_NOTHING":            "",
	} {
		require.Equal(t, v, env[k], k)
	}
}

func TestPlanExcludesStepsThatCanNeverRun(t *testing.T) {
	t.Parallel()
	yaml := `kind: pipeline
type: exec
clone: {disable: true}
steps:
- name: always
  commands: [true]
- name: main-only
  commands: [true]
  when: {branch: main}
- name: not-push
  commands: [true]
  when: {event: {exclude: [push]}}
- name: tags
  commands: [true]
  when: {ref: ["refs/tags/*"]}
- name: prod
  commands: [true]
  when: {target: production}
- name: this-server
  commands: [true]
  when: {instance: "drone.example.*"}
- name: other-server
  commands: [true]
  when: {instance: ci.other.org}
- name: this-repo
  commands: [true]
  when: {repo: "acme/*", action: {exclude: [closed]}}
- name: nightly
  commands: [true]
  when: {cron: nightly}
- name: on-failure
  commands: [true]
  when: {status: failure}
  depends_on: [not-push, always]
`
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	require.Equal(t, []string{"not-push", "tags", "prod", "other-server", "nightly"}, plan.Excluded)
	var names []string
	for _, s := range plan.Steps {
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"always", "main-only", "this-server", "this-repo", "on-failure"}, names)
	last := plan.Steps[4]
	require.Equal(t, 5, last.Number, "numbers count only the steps that are sent")
	require.Equal(t, []string{"always"}, last.DependsOn, "an excluded dependency is dropped")
	require.Empty(t, plan.Steps[1].DependsOn, "with depends_on anywhere, steps without it start at once")
}

func TestPlanRunsStepsInOrderWithoutDependsOn(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n- name: b\n  when: {branch: dev}\n- name: c\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	require.Empty(t, plan.Steps[0].DependsOn)
	require.Equal(t, []string{"a"}, plan.Steps[1].DependsOn, "c follows a; b is not sent")
	require.Equal(t, pipeline.Condition{Include: []string{"success"}}, plan.Steps[1].RunOn)
}
