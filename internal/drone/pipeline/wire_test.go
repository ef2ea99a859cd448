package pipeline_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

func TestWireStepsAndReport(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\nsteps:\n- name: a\n  image: alpine\n  failure: ignore\n- name: b\n  image: alpine\n  depends_on: [a]\n  detach: true\n- name: c\n  image: alpine\n  depends_on: [a]\n- name: d\n  image: alpine\n  depends_on: [c]\n  environment: {X: {from_secret: missing}}\n"
	f := facts()
	f.CloneImage = "drone/git:latest"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), f)
	steps := plan.WireSteps(7)
	require.Equal(t, []gen.Step{
		{Number: 1, Name: "clone", StepId: 7, Status: gen.StatusPending, Image: "drone/git:latest"},
		{Number: 2, Name: "a", StepId: 7, Status: gen.StatusPending, Errignore: true, Image: "alpine", DependsOn: []string{"clone"}},
		{Number: 3, Name: "b", StepId: 7, Status: gen.StatusPending, Image: "alpine", Detached: true, DependsOn: []string{"a"}},
		{Number: 4, Name: "c", StepId: 7, Status: gen.StatusPending, Image: "alpine", DependsOn: []string{"a"}},
		{Number: 5, Name: "d", StepId: 7, Status: gen.StatusPending, Image: "alpine", DependsOn: []string{"c"}},
	}, steps)

	s := pipeline.NewScheduler(plan)
	d := s.Next()
	require.Equal(t, "clone", d.Start[0].Step.Name)
	require.NoError(t, s.Finish(1, pipeline.Result{}))
	d = s.Next()
	require.NoError(t, s.Finish(d.Start[0].Step.Number, pipeline.Result{ExitCode: 3}))
	s.Next()
	require.NoError(t, s.Finish(4, pipeline.Result{ExitCode: 78}))
	s.Report(steps)
	require.Equal(t, gen.StatusSuccess, steps[0].Status)
	require.Equal(t, gen.StatusFailure, steps[1].Status)
	require.Equal(t, 3, steps[1].ExitCode)
	require.Equal(t, gen.StatusRunning, steps[2].Status, "the detached step is still running")
	require.Equal(t, gen.StatusSuccess, steps[3].Status)
	require.Equal(t, gen.StatusSkipped, steps[4].Status, "exit 78 skipped it before its secret mattered")
}

func TestFailStage(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	_, err := pipeline.ParseStage([]byte("kind: pipeline\ntype: vm\nsteps:\n- name: a\n"), "default")
	require.Error(t, err)
	st := pipeline.FailStage(gen.Stage{Id: 3, Status: gen.StatusPending, Version: 4, Steps: []gen.Step{{}}}, err, now)
	require.Equal(t, gen.StatusError, st.Status)
	require.Equal(t, 255, st.ExitCode)
	require.Contains(t, st.Error, `type "vm" is not supported`)
	require.Equal(t, now.Unix(), st.Started)
	require.Equal(t, now.Unix(), st.Stopped)
	require.Nil(t, st.Steps)
	require.Equal(t, int64(4), st.Version, "the version is the caller's to keep")

	long := pipeline.FailStage(gen.Stage{Started: 5}, errors.New(strings.Repeat("é", 400)), now)
	require.LessOrEqual(t, len(long.Error), 500)
	require.True(t, utf8.ValidString(long.Error))
	require.Equal(t, int64(5), long.Started)
}
