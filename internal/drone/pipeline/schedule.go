package pipeline

import (
	"fmt"
	"maps"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// Exit codes with a meaning of their own.
const (
	// ExitSkipRest ends a step with success and skips every step that has not started yet.
	ExitSkipRest = 78
	// ExitKilled is the exit code of a step or stage that was killed (cancelled or timed out).
	ExitKilled = 137
	// ExitError is the exit code of a step or stage that could not run.
	ExitError = 255
)

// Result is how a step ended.
type Result struct {
	// ExitCode is the step's exit code.
	ExitCode int
	// Killed is true when the step was stopped (a cancel or a timeout); ExitCode is then
	// ExitKilled unless it is set.
	Killed bool
	// Error, when set, says why the step could not run to its end (the engine failed); the step's
	// status is then error, with ExitCode ExitError unless it is set.
	Error string
}

// Start is a step to start now, with its environment for this moment of the stage.
type Start struct {
	Step *PlannedStep
	// Env is the step's environment with DRONE_BUILD_STATUS and DRONE_STAGE_STATUS set to the
	// stage's status so far.
	Env map[string]string
}

// Decision is what to do after the stage starts or a step ends.
type Decision struct {
	// Start are the steps whose dependencies are done and whose `when: status` lets them run.
	Start []Start
	// Skipped are the steps `when: status` (or an earlier exit 78, or a cancel) ruled out; report
	// them as skipped.
	Skipped []*PlannedStep
	// Errored are the steps that cannot run (their Error says why); report them with status
	// error, exit code ExitError and that text.
	Errored []*PlannedStep
}

// Scheduler is a stage's state machine: fed step results, it says which steps start next
// (several at once where the depends_on graph branches), which are skipped, and when the stage
// is over with which status. It is not safe for concurrent use.
type Scheduler struct {
	plan      *Plan
	states    []*stepState
	byName    map[string]*stepState
	byNumber  map[int]*stepState
	failed    bool
	errored   bool
	killed    bool
	cancelled bool
	skipRest  bool
}

type stepState struct {
	ps       *PlannedStep
	status   gen.Status
	exitCode int
	err      string
}

// StepOutcome is a step's state as the scheduler knows it.
type StepOutcome struct {
	Status   gen.Status
	ExitCode int
	Error    string
}

// NewScheduler returns the scheduler of a plan, every step pending.
func NewScheduler(plan *Plan) *Scheduler {
	s := &Scheduler{plan: plan, byName: map[string]*stepState{}, byNumber: map[int]*stepState{}}
	for _, ps := range plan.Steps {
		st := &stepState{ps: ps, status: gen.StatusPending}
		s.states = append(s.states, st)
		s.byName[ps.Name] = st
		s.byNumber[ps.Number] = st
	}
	return s
}

// statusSoFar is the stage's status as steps see it: failure once a step that counts failed.
func (s *Scheduler) statusSoFar() string {
	if s.failed || s.errored {
		return "failure"
	}
	return "success"
}

// Next decides, from the current state, which pending steps start, are skipped or fail to run.
// Call it once the stage starts and after every Finish; it returns an empty Decision while
// nothing can change.
func (s *Scheduler) Next() Decision {
	var d Decision
	for changed := true; changed; {
		changed = false
		for _, st := range s.states {
			if st.status != gen.StatusPending {
				continue
			}
			if s.skipRest || s.cancelled || s.killed {
				st.status = gen.StatusSkipped
				d.Skipped = append(d.Skipped, st.ps)
				continue
			}
			if !s.ready(st) {
				continue
			}
			changed = true
			switch {
			case !st.ps.RunOn.Match(s.statusSoFar()):
				st.status = gen.StatusSkipped
				d.Skipped = append(d.Skipped, st.ps)
			case st.ps.Error != "":
				st.status, st.exitCode, st.err = gen.StatusError, ExitError, st.ps.Error
				s.count(st)
				d.Errored = append(d.Errored, st.ps)
			default:
				st.status = gen.StatusRunning
				env := maps.Clone(st.ps.Env)
				env["DRONE_BUILD_STATUS"] = s.statusSoFar()
				env["DRONE_STAGE_STATUS"] = s.statusSoFar()
				d.Start = append(d.Start, Start{Step: st.ps, Env: env})
			}
		}
	}
	return d
}

// ready reports whether every step st depends on is done, or is detached and started.
func (s *Scheduler) ready(st *stepState) bool {
	for _, name := range st.ps.DependsOn {
		dep := s.byName[name]
		if dep == nil {
			continue
		}
		if dep.status == gen.StatusPending || (dep.status == gen.StatusRunning && !dep.ps.Detach) {
			return false
		}
	}
	return true
}

// Finish records how a running step ended. Exit 0 is success; exit 78 is success and skips
// every step not started yet; another exit code is failure; Error is error; Killed is killed,
// and, as a step is killed only when the stage is (a cancel, a timeout), skips every step not
// started yet.
// A failure or error fails the stage unless the step has `failure: ignore` or is detached.
func (s *Scheduler) Finish(number int, r Result) error {
	st, ok := s.byNumber[number]
	if !ok {
		return fmt.Errorf("finish step %d: the plan has no such step", number)
	}
	if st.status != gen.StatusRunning {
		return fmt.Errorf("finish step %d (%s): it is %s, not running", number, st.ps.Name, st.status)
	}
	st.exitCode = r.ExitCode
	switch {
	case r.Killed:
		st.status = gen.StatusKilled
		if st.exitCode == 0 {
			st.exitCode = ExitKilled
		}
	case r.Error != "":
		st.status, st.err = gen.StatusError, r.Error
		if st.exitCode == 0 {
			st.exitCode = ExitError
		}
	case r.ExitCode == 0:
		st.status = gen.StatusSuccess
	case r.ExitCode == ExitSkipRest:
		st.status = gen.StatusSuccess
		s.skipRest = true
	default:
		st.status = gen.StatusFailure
	}
	s.count(st)
	return nil
}

// count lets a finished step's status weigh on the stage's.
func (s *Scheduler) count(st *stepState) {
	if st.ps.Detach {
		return
	}
	switch st.status {
	case gen.StatusKilled:
		s.killed = true
	case gen.StatusError:
		if !st.ps.ErrIgnore {
			s.errored = true
		}
	case gen.StatusFailure:
		if !st.ps.ErrIgnore {
			s.failed = true
		}
	}
}

// Cancel stops the stage: no step starts any more (the next Next skips the pending ones), and
// the stage ends killed. It returns the running steps, which the caller stops and then reports
// with Finish and Killed.
func (s *Scheduler) Cancel() []*PlannedStep {
	s.cancelled = true
	var running []*PlannedStep
	for _, st := range s.states {
		if st.status == gen.StatusRunning {
			running = append(running, st.ps)
		}
	}
	return running
}

// Done reports whether the stage is over: no step pending, and none running but detached ones.
func (s *Scheduler) Done() bool {
	for _, st := range s.states {
		if st.status == gen.StatusPending || (st.status == gen.StatusRunning && !st.ps.Detach) {
			return false
		}
	}
	return true
}

// Running returns the steps running now, detached ones included: once Done, those are the
// detached steps to stop.
func (s *Scheduler) Running() []*PlannedStep {
	var out []*PlannedStep
	for _, st := range s.states {
		if st.status == gen.StatusRunning {
			out = append(out, st.ps)
		}
	}
	return out
}

// Step returns the state of the step numbered number.
func (s *Scheduler) Step(number int) (StepOutcome, bool) {
	st, ok := s.byNumber[number]
	if !ok {
		return StepOutcome{}, false
	}
	return StepOutcome{Status: st.status, ExitCode: st.exitCode, Error: st.err}, true
}

// Outcome is the stage's status and exit code: killed (ExitKilled) after a cancel or when a step
// was killed; error (ExitError) when a step that counts could not run; failure (exit code 0, as
// Drone reports it) when one failed; success otherwise.
func (s *Scheduler) Outcome() (gen.Status, int) {
	switch {
	case s.cancelled || s.killed:
		return gen.StatusKilled, ExitKilled
	case s.errored:
		return gen.StatusError, ExitError
	case s.failed:
		return gen.StatusFailure, 0
	default:
		return gen.StatusSuccess, 0
	}
}
