package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

const multi = `
kind: secret
name: token
get:
  path: secret/data/x
---
kind: pipeline
type: exec
name: build

platform:
  os: linux
  arch: amd64

workspace:
  path: go/src/app

clone:
  disable: true

environment:
  GOFLAGS: -mod=mod
  RETRIES: 3

steps:
- name: test
  commands:
  - go test ./...
  environment:
    TOKEN:
      from_secret: token
    VERBOSE: true
  when:
    branch: [main, release/*]
    event:
      exclude: [pull_request]
  failure: ignore
- name: publish
  image: plugins/docker
  pull: if-not-exists
  settings:
    repo: acme/app
    tags: [latest, "1.0"]
    password:
      from_secret: docker_password
  depends_on: [test]
  detach: true
  privileged: true
  volumes:
  - name: cache
    path: /cache
---
kind: pipeline
name: deploy
steps:
- name: ship
  image: alpine
  commands: [echo ship]
  when:
    status: [success, failure]
    target: production
`

func TestParsePicksThePipelineByName(t *testing.T) {
	t.Parallel()
	f, err := pipeline.Parse([]byte(multi))
	require.NoError(t, err)
	require.Len(t, f.Pipelines, 2, "the secret document is left out")

	p, err := f.Pipeline("build")
	require.NoError(t, err)
	require.Equal(t, "exec", p.Type)
	require.Equal(t, pipeline.Platform{OS: "linux", Arch: "amd64"}, p.Platform)
	require.Equal(t, "go/src/app", p.Workspace.Path)
	require.True(t, p.Clone.Disable)
	require.Equal(t, pipeline.Value{Literal: "3"}, p.Environment["RETRIES"])
	test := p.Steps[0]
	require.Equal(t, []string{"go test ./..."}, test.Commands)
	require.Equal(t, pipeline.Value{FromSecret: "token"}, test.Environment["TOKEN"])
	require.Equal(t, pipeline.Value{Literal: "true"}, test.Environment["VERBOSE"])
	require.Equal(t, pipeline.Condition{Include: []string{"main", "release/*"}}, test.When.Branch)
	require.Equal(t, pipeline.Condition{Exclude: []string{"pull_request"}}, test.When.Event)
	require.Equal(t, "ignore", test.Failure)
	publish := p.Steps[1]
	require.Equal(t, pipeline.Parameter{FromSecret: "docker_password"}, publish.Settings["password"])
	require.Equal(t, pipeline.Parameter{Value: []any{"latest", "1.0"}}, publish.Settings["tags"])
	require.True(t, publish.Detach)
	require.True(t, publish.Privileged)
	require.Equal(t, []pipeline.VolumeMount{{Name: "cache", Path: "/cache"}}, publish.Volumes)
	require.Equal(t, []string{"test"}, publish.DependsOn)

	deploy, err := pipeline.ParseStage([]byte(multi), "deploy")
	require.NoError(t, err)
	require.Equal(t, "docker", deploy.Type, "docker is the default type")
	require.Equal(t, pipeline.Condition{Include: []string{"production"}}, deploy.Steps[0].When.Target)

	_, err = f.Pipeline("missing")
	require.ErrorIs(t, err, pipeline.ErrNoPipeline)
	require.ErrorContains(t, err, `"missing" is not among "build", "deploy"`)

	one, err := pipeline.ParseStage([]byte("kind: pipeline\ntype: exec\nsteps:\n- name: a\n  commands: [true]\n"), "default")
	require.NoError(t, err)
	require.Equal(t, "default", one.Name, "an unnamed pipeline is called default")
}

func TestParseRefusesWhatCannotRun(t *testing.T) {
	t.Parallel()
	const head = "kind: pipeline\ntype: exec\nname: p\n"
	tests := []struct {
		name string
		yaml string
		is   error
		says string
	}{
		{"not YAML", "kind: pipeline\nsteps: [", pipeline.ErrSyntax, "document 1"},
		{"steps not a list", head + "steps: 3\n", pipeline.ErrSyntax, "document 1"},
		{"environment value a list", head + "steps:\n- name: a\n  environment:\n    A: [1]\n", pipeline.ErrSyntax, "string or {from_secret: name}"},
		{"from_secret empty", head + "steps:\n- name: a\n  environment:\n    A: {other: x}\n", pipeline.ErrSyntax, "from_secret"},
		{"condition shape", head + "steps:\n- name: a\n  when:\n    branch: {only: main}\n", pipeline.ErrSyntax, `not "only"`},
		{"unknown type", "kind: pipeline\ntype: kubernetes\nname: p\nsteps:\n- name: a\n", pipeline.ErrInvalid, `type "kubernetes" is not supported`},
		{"no steps", head, pipeline.ErrInvalid, "no steps"},
		{"unnamed step", head + "steps:\n- commands: [x]\n", pipeline.ErrInvalid, "step 1 has no name"},
		{"empty step", head + "steps:\n- \n", pipeline.ErrInvalid, "step 1 is empty"},
		{"duplicate step", head + "steps:\n- name: a\n- name: a\n", pipeline.ErrInvalid, `two steps are named "a"`},
		{"docker without image", "kind: pipeline\nname: p\nsteps:\n- name: a\n", pipeline.ErrInvalid, "needs an image"},
		{"bad failure", head + "steps:\n- name: a\n  failure: maybe\n", pipeline.ErrInvalid, `failure is "maybe"`},
		{"bad pull", head + "steps:\n- name: a\n  pull: sometimes\n", pipeline.ErrInvalid, `pull is "sometimes"`},
		{"bad env name", head + "steps:\n- name: a\n  environment:\n    A-B: x\n", pipeline.ErrInvalid, `"A-B" is not a variable name`},
		{"bad glob", head + "steps:\n- name: a\n  when:\n    branch: 'release/['\n", pipeline.ErrInvalid, "when.branch"},
		{"bad status", head + "steps:\n- name: a\n  when:\n    status: [done]\n", pipeline.ErrInvalid, `when.status is "done"`},
		{"unknown dependency", head + "steps:\n- name: a\n  depends_on: [b]\n", pipeline.ErrInvalid, `depends on "b"`},
		{"cycle", head + "steps:\n- name: a\n  depends_on: [c]\n- name: b\n  depends_on: [a]\n- name: c\n  depends_on: [b]\n", pipeline.ErrInvalid, "a -> c -> b -> a"},
		{"self cycle", head + "steps:\n- name: a\n  depends_on: [a]\n", pipeline.ErrInvalid, "a -> a"},
		{"volume without path", head + "steps:\n- name: a\n  volumes:\n  - name: v\n", pipeline.ErrInvalid, "volume mount"},
		{"workspace climbing out", head + "workspace:\n  path: ../etc\nsteps:\n- name: a\n", pipeline.ErrInvalid, `workspace.path "../etc"`},
		{"workspace at the root", head + "workspace:\n  path: /\nsteps:\n- name: a\n", pipeline.ErrInvalid, `workspace.path "/"`},
		{"two pipelines with one name", head + "steps:\n- name: a\n---\n" + head + "steps:\n- name: a\n", pipeline.ErrInvalid, `two pipelines are named "p"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pipeline.Parse([]byte(tt.yaml))
			require.ErrorIs(t, err, tt.is)
			require.ErrorContains(t, err, tt.says)
		})
	}
}

func TestConditionMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    pipeline.Condition
		v    string
		want bool
	}{
		{"empty matches all", pipeline.Condition{}, "anything", true},
		{"include exact", pipeline.Condition{Include: []string{"main"}}, "main", true},
		{"include other", pipeline.Condition{Include: []string{"main"}}, "dev", false},
		{"glob", pipeline.Condition{Include: []string{"release/*"}}, "release/1.0", true},
		{"glob stops at slash", pipeline.Condition{Include: []string{"release/*"}}, "release/1.0/hotfix", false},
		{"exclude", pipeline.Condition{Exclude: []string{"feature/*"}}, "feature/x", false},
		{"exclude other", pipeline.Condition{Exclude: []string{"feature/*"}}, "main", true},
		{"include and exclude", pipeline.Condition{Include: []string{"*"}, Exclude: []string{"wip"}}, "wip", false},
		{"character class", pipeline.Condition{Include: []string{"v[0-9]*"}}, "v2", true},
		{"empty value against include", pipeline.Condition{Include: []string{"production"}}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.c.Match(tt.v))
		})
	}
}
