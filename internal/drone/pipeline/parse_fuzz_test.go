package pipeline_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

// FuzzParse feeds arbitrary files to the parser: it never panics, every failure matches
// ErrSyntax or ErrInvalid, and every pipeline it accepts can be planned and scheduled to the end.
func FuzzParse(f *testing.F) {
	f.Add([]byte(multi))
	f.Add([]byte("kind: pipeline\ntype: exec\nsteps:\n- name: a\n  depends_on: [b]\n- name: b\n"))
	f.Add([]byte("kind: pipeline\nsteps:\n- name: a\n  image: x\n  settings: {a: {b: [1, {c: d}]}}\n  when: {status: failure, branch: {exclude: 'x*'}}\n"))
	f.Add([]byte("---\n---\nkind: pipeline\n"))
	f.Add([]byte("kind: pipeline\ntype: exec\nsteps:\n- name: a\n  environment: {A: {from_secret: token}}\n  detach: true\n- name: b\n  failure: ignore\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := pipeline.Parse(data)
		if err != nil {
			require.True(t, errors.Is(err, pipeline.ErrSyntax) || errors.Is(err, pipeline.ErrInvalid), "%v", err)
			return
		}
		for _, p := range file.Pipelines {
			plan := pipeline.NewPlan(p, facts())
			s := pipeline.NewScheduler(plan)
			for range len(plan.Steps) + 2 {
				d := s.Next()
				for _, st := range d.Start {
					require.NoError(t, s.Finish(st.Step.Number, pipeline.Result{ExitCode: st.Step.Number % 3}))
				}
			}
			require.True(t, s.Done(), "a planned stage always ends")
		}
	})
}
