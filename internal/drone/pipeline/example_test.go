package pipeline_test

import (
	"fmt"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

// A stage's YAML is parsed, planned with the run's facts (the clone step first, every other
// step after it), and driven step by step.
func Example() {
	yaml := `kind: pipeline
type: exec
name: build
steps:
- name: test
  commands: [go test ./...]
- name: lint
  commands: [go vet ./...]
  failure: ignore
- name: package
  commands: [make dist]
  depends_on: [test, lint]
- name: deploy
  commands: [make deploy]
  depends_on: [package]
  when:
    branch: release/*
- name: notify
  commands: [./notify]
  depends_on: [package]
  when:
    status: failure
`
	p, err := pipeline.ParseStage([]byte(yaml), "build")
	if err != nil {
		panic(err)
	}
	f := facts() // the stage's details: a push to main
	plan := pipeline.NewPlan(p, f)
	fmt.Println("not sent:", plan.Excluded)

	s := pipeline.NewScheduler(plan)
	exit := map[string]int{"lint": 1}
	for !s.Done() {
		d := s.Next()
		for _, st := range d.Skipped {
			fmt.Println("skip", st.Name)
		}
		for _, st := range d.Start {
			fmt.Println("start", st.Step.Name, "as step", st.Env["DRONE_STEP_NUMBER"])
		}
		for _, st := range d.Start {
			if err := s.Finish(st.Step.Number, pipeline.Result{ExitCode: exit[st.Step.Name]}); err != nil {
				panic(err)
			}
		}
	}
	fmt.Println(s.Outcome())
	// Output:
	// not sent: [deploy]
	// start clone as step 1
	// start test as step 2
	// start lint as step 3
	// start package as step 4
	// skip notify
	// success 0
}
