package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

// run drives a scheduler to the end, finishing every started step with its result (exit 0 by
// default), all of a wave before asking for the next. It returns the names started in each
// wave.
func run(t *testing.T, s *pipeline.Scheduler, results map[string]pipeline.Result) [][]string {
	t.Helper()
	var waves [][]string
	for range 100 {
		d := s.Next()
		var wave []string
		for _, st := range d.Start {
			wave = append(wave, st.Step.Name)
		}
		if len(wave) > 0 {
			waves = append(waves, wave)
		}
		for _, st := range d.Start {
			if st.Step.Detach {
				continue
			}
			require.NoError(t, s.Finish(st.Step.Number, results[st.Step.Name]))
		}
		if len(d.Start) == 0 && len(d.Skipped) == 0 && len(d.Errored) == 0 {
			require.True(t, s.Done(), "no progress, yet not done")
			return waves
		}
	}
	t.Fatal("the scheduler never ended")
	return nil
}

func statuses(s *pipeline.Scheduler, plan *pipeline.Plan) map[string]gen.Status {
	out := map[string]gen.Status{}
	for _, ps := range plan.Steps {
		o, _ := s.Step(ps.Number)
		out[ps.Name] = o.Status
	}
	return out
}

func TestScheduler(t *testing.T) {
	t.Parallel()
	const (
		success = gen.StatusSuccess
		failure = gen.StatusFailure
		skipped = gen.StatusSkipped
		errored = gen.StatusError
	)
	tests := []struct {
		name     string
		yaml     string
		results  map[string]pipeline.Result
		waves    [][]string
		statuses map[string]gen.Status
		stage    gen.Status
		exit     int
	}{
		{
			name:     "serial success",
			yaml:     "steps:\n- name: a\n- name: b\n- name: c\n",
			waves:    [][]string{{"a"}, {"b"}, {"c"}},
			statuses: map[string]gen.Status{"a": success, "b": success, "c": success},
			stage:    success,
		},
		{
			name:     "a failure skips the rest but runs the failure handlers",
			yaml:     "steps:\n- name: a\n- name: b\n- name: notify\n  when: {status: failure}\n- name: always\n  when: {status: [success, failure]}\n",
			results:  map[string]pipeline.Result{"a": {ExitCode: 2}},
			waves:    [][]string{{"a"}, {"notify"}, {"always"}},
			statuses: map[string]gen.Status{"a": failure, "b": skipped, "notify": success, "always": success},
			stage:    failure,
		},
		{
			name:     "failure ignore keeps the stage green",
			yaml:     "steps:\n- name: lint\n  failure: ignore\n- name: test\n- name: notify\n  when: {status: failure}\n",
			results:  map[string]pipeline.Result{"lint": {ExitCode: 1}},
			waves:    [][]string{{"lint"}, {"test"}},
			statuses: map[string]gen.Status{"lint": failure, "test": success, "notify": skipped},
			stage:    success,
		},
		{
			name:     "a DAG runs its branches in parallel",
			yaml:     "steps:\n- name: clone\n- name: unit\n  depends_on: [clone]\n- name: lint\n  depends_on: [clone]\n- name: e2e\n  depends_on: [clone]\n- name: publish\n  depends_on: [unit, lint, e2e]\n",
			waves:    [][]string{{"clone"}, {"unit", "lint", "e2e"}, {"publish"}},
			statuses: map[string]gen.Status{"clone": success, "unit": success, "lint": success, "e2e": success, "publish": success},
			stage:    success,
		},
		{
			name:     "roots of a DAG start together",
			yaml:     "steps:\n- name: a\n- name: b\n- name: c\n  depends_on: [a]\n",
			waves:    [][]string{{"a", "b"}, {"c"}},
			statuses: map[string]gen.Status{"a": success, "b": success, "c": success},
			stage:    success,
		},
		{
			name:     "a failed branch skips what depends on it once its turn comes",
			yaml:     "steps:\n- name: a\n- name: b\n- name: after-a\n  depends_on: [a]\n- name: after-b\n  depends_on: [b]\n",
			results:  map[string]pipeline.Result{"a": {ExitCode: 1}},
			waves:    [][]string{{"a", "b"}},
			statuses: map[string]gen.Status{"a": failure, "b": success, "after-a": skipped, "after-b": skipped},
			stage:    failure,
		},
		{
			name:     "exit 78 ends early with success",
			yaml:     "steps:\n- name: check\n- name: build\n- name: notify\n  when: {status: [success, failure]}\n",
			results:  map[string]pipeline.Result{"check": {ExitCode: 78}},
			waves:    [][]string{{"check"}},
			statuses: map[string]gen.Status{"check": success, "build": skipped, "notify": skipped},
			stage:    success,
		},
		{
			name:     "an engine error is an error",
			yaml:     "steps:\n- name: a\n- name: b\n",
			results:  map[string]pipeline.Result{"a": {Error: "image pull failed"}},
			waves:    [][]string{{"a"}},
			statuses: map[string]gen.Status{"a": errored, "b": skipped},
			stage:    errored,
			exit:     255,
		},
		{
			name:     "a killed step kills the stage",
			yaml:     "steps:\n- name: a\n- name: b\n",
			results:  map[string]pipeline.Result{"a": {Killed: true}},
			waves:    [][]string{{"a"}},
			statuses: map[string]gen.Status{"a": gen.StatusKilled, "b": skipped},
			stage:    gen.StatusKilled,
			exit:     137,
		},
		{
			name:     "a detached step does not hold up or fail the stage",
			yaml:     "steps:\n- name: db\n  detach: true\n- name: test\n",
			waves:    [][]string{{"db", "test"}},
			statuses: map[string]gen.Status{"db": gen.StatusRunning, "test": success},
			stage:    success,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nclone: {disable: true}\n"+tt.yaml, "default"), facts())
			s := pipeline.NewScheduler(plan)
			require.Equal(t, tt.waves, run(t, s, tt.results))
			require.Equal(t, tt.statuses, statuses(s, plan))
			status, exit := s.Outcome()
			require.Equal(t, tt.stage, status)
			require.Equal(t, tt.exit, exit)
		})
	}
}

func TestSchedulerStepsThatCannotRun(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n  environment:\n    X: {from_secret: nope}\n- name: b\n  when: {status: [success, failure]}\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	s := pipeline.NewScheduler(plan)
	d := s.Next()
	require.Len(t, d.Errored, 1)
	require.Equal(t, "a", d.Errored[0].Name)
	require.Len(t, d.Start, 1, "b runs on failure too")
	o, _ := s.Step(1)
	require.Equal(t, pipeline.StepOutcome{Status: gen.StatusError, ExitCode: 255, Error: `secret "nope" is not available (read by environment X)`}, o)
	require.Equal(t, "failure", d.Start[0].Env["DRONE_BUILD_STATUS"])
	require.NoError(t, s.Finish(2, pipeline.Result{}))
	status, exit := s.Outcome()
	require.Equal(t, gen.StatusError, status)
	require.Equal(t, 255, exit)
}

func TestSchedulerCancel(t *testing.T) {
	t.Parallel()
	yaml := "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n- name: b\n- name: c\n  depends_on: [a]\n- name: d\n  depends_on: [c]\n"
	plan := pipeline.NewPlan(mustParse(t, yaml, "default"), facts())
	s := pipeline.NewScheduler(plan)
	d := s.Next()
	require.Len(t, d.Start, 2)
	require.Equal(t, "success", d.Start[0].Env["DRONE_STAGE_STATUS"])
	require.NoError(t, s.Finish(2, pipeline.Result{}))

	running := s.Cancel()
	require.Len(t, running, 1)
	require.Equal(t, "a", running[0].Name)
	d = s.Next()
	require.Empty(t, d.Start)
	require.Len(t, d.Skipped, 2, "the steps not started are skipped at once")
	require.False(t, s.Done(), "a is still to be stopped")
	require.NoError(t, s.Finish(1, pipeline.Result{Killed: true}))
	require.True(t, s.Done())
	status, exit := s.Outcome()
	require.Equal(t, gen.StatusKilled, status)
	require.Equal(t, 137, exit)
	o, _ := s.Step(1)
	require.Equal(t, 137, o.ExitCode)
}

func TestSchedulerRefusesImpossibleResults(t *testing.T) {
	t.Parallel()
	plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: a\n- name: b\n", "default"), facts())
	s := pipeline.NewScheduler(plan)
	require.ErrorContains(t, s.Finish(9, pipeline.Result{}), "no such step")
	require.ErrorContains(t, s.Finish(2, pipeline.Result{}), "not running")
	s.Next()
	require.NoError(t, s.Finish(1, pipeline.Result{}))
	require.ErrorContains(t, s.Finish(1, pipeline.Result{}), "not running")
}

func TestSchedulerDetachedStepsAreStoppedAtTheEnd(t *testing.T) {
	t.Parallel()
	plan := pipeline.NewPlan(mustParse(t, "kind: pipeline\ntype: exec\nclone: {disable: true}\nsteps:\n- name: svc\n  detach: true\n- name: t\n", "default"), facts())
	s := pipeline.NewScheduler(plan)
	run(t, s, nil)
	running := s.Running()
	require.Len(t, running, 1)
	require.Equal(t, "svc", running[0].Name)
	require.NoError(t, s.Finish(1, pipeline.Result{Killed: true}))
	status, _ := s.Outcome()
	require.Equal(t, gen.StatusSuccess, status, "stopping a detached step does not kill the stage")
}
