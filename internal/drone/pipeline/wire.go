package pipeline

import (
	"slices"
	"time"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// maxWireError is how much of an error text a Drone server keeps.
const maxWireError = 500

// WireSteps returns the planned steps as the stage's first update lists them: numbered, named,
// pending, with step_id set to the stage's id (the wire's name for it), and their image,
// dependencies, detach and failure: ignore.
func (p *Plan) WireSteps(stageID int64) []gen.Step {
	out := make([]gen.Step, 0, len(p.Steps))
	for _, ps := range p.Steps {
		out = append(out, gen.Step{
			Number:    ps.Number,
			Name:      ps.Name,
			StepId:    stageID,
			Status:    gen.StatusPending,
			Errignore: ps.ErrIgnore,
			Image:     ps.Image,
			Detached:  ps.Detach,
			DependsOn: slices.Clone(ps.DependsOn),
		})
	}
	return out
}

// Report copies each step's outcome into the wire steps with the same number: status, exit code
// and error. Steps that never started are reported skipped, as the final stage update lists
// them; the times are left to the caller, who saw the steps start and stop.
func (s *Scheduler) Report(steps []gen.Step) {
	for i := range steps {
		st, ok := s.byNumber[steps[i].Number]
		if !ok {
			continue
		}
		status := st.status
		if status == gen.StatusPending {
			status = gen.StatusSkipped
		}
		steps[i].Status, steps[i].ExitCode, steps[i].Error = status, st.exitCode, cutError(st.err)
	}
}

// FailStage returns the stage as the single update of a stage that could not run reports it
// (its YAML does not parse, no pipeline has its name, its type is not supported, ...): status
// error, exit code ExitError, err's text as its error, started (if it had not) and stopped at
// now, and no steps, since none was ever reported.
func FailStage(stage gen.Stage, err error, now time.Time) gen.Stage {
	stage.Status, stage.ExitCode, stage.Error = gen.StatusError, ExitError, cutError(err.Error())
	if stage.Started == 0 {
		stage.Started = now.Unix()
	}
	stage.Stopped = now.Unix()
	stage.Steps = nil
	return stage
}

// cutError keeps what a Drone server keeps of an error text, cutting on a rune boundary.
func cutError(s string) string {
	if len(s) <= maxWireError {
		return s
	}
	cut := maxWireError
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut]
}
