package mockmanager

import (
	"context"
	"maps"
	"slices"
	"time"

	droneapi "github.com/dlite-dev/dlite/gen/drone"
)

// rpcFailure is how the real server fails a call: a lock conflict (409) or any other error, whose
// text is the 500's body.
type rpcFailure struct {
	conflict bool
	text     string
}

func conflict() *rpcFailure           { return &rpcFailure{conflict: true, text: droneLockError} }
func failure(text string) *rpcFailure { return &rpcFailure{text: text} }

// droneRPC serves the runner RPC (openapi/drone.yaml). Requests reach it authenticated and
// validated; each rule of the real server is in the DroneServer method it calls.
type droneRPC struct{ s *DroneServer }

var _ droneapi.StrictServerInterface = droneRPC{}

func (r droneRPC) Ping(context.Context, droneapi.PingRequestObject) (droneapi.PingResponseObject, error) {
	return droneapi.Ping200Response{}, nil
}

func (r droneRPC) RequestStage(ctx context.Context, req droneapi.RequestStageRequestObject) (droneapi.RequestStageResponseObject, error) {
	st, ok := r.s.request(ctx, *req.Body)
	if !ok {
		return droneapi.RequestStage204Response{}, nil
	}
	return droneapi.RequestStage200JSONResponse(st), nil
}

func (r droneRPC) AcceptStage(_ context.Context, req droneapi.AcceptStageRequestObject) (droneapi.AcceptStageResponseObject, error) {
	st, f := r.s.accept(req.StageId, req.Params.Machine)
	switch {
	case f == nil:
		return droneapi.AcceptStage200JSONResponse(st), nil
	case f.conflict:
		return droneapi.AcceptStage409TextResponse(f.text), nil
	default:
		return droneapi.AcceptStage500TextResponse(f.text), nil
	}
}

func (r droneRPC) GetStageDetails(_ context.Context, req droneapi.GetStageDetailsRequestObject) (droneapi.GetStageDetailsResponseObject, error) {
	d, f := r.s.details(req.StageId)
	if f != nil {
		return droneapi.GetStageDetails500TextResponse(f.text), nil
	}
	return droneapi.GetStageDetails200JSONResponse(d), nil
}

func (r droneRPC) UpdateStage(_ context.Context, req droneapi.UpdateStageRequestObject) (droneapi.UpdateStageResponseObject, error) {
	st, f := r.s.updateStage(*req.Body)
	switch {
	case f == nil:
		return droneapi.UpdateStage200JSONResponse(st), nil
	case f.conflict:
		return droneapi.UpdateStage409TextResponse(f.text), nil
	default:
		return droneapi.UpdateStage500TextResponse(f.text), nil
	}
}

func (r droneRPC) UpdateStep(_ context.Context, req droneapi.UpdateStepRequestObject) (droneapi.UpdateStepResponseObject, error) {
	sp, f := r.s.updateStep(*req.Body)
	switch {
	case f == nil:
		return droneapi.UpdateStep200JSONResponse(sp), nil
	case f.conflict:
		return droneapi.UpdateStep409TextResponse(f.text), nil
	default:
		return droneapi.UpdateStep500TextResponse(f.text), nil
	}
}

func (r droneRPC) WatchBuild(ctx context.Context, req droneapi.WatchBuildRequestObject) (droneapi.WatchBuildResponseObject, error) {
	cancelled, f := r.s.watch(ctx, req.BuildId)
	switch {
	case f != nil:
		return droneapi.WatchBuild500TextResponse(f.text), nil
	case cancelled:
		return droneapi.WatchBuild200Response{}, nil
	default:
		return droneapi.WatchBuild204Response{}, nil
	}
}

func (r droneRPC) BatchLogs(_ context.Context, req droneapi.BatchLogsRequestObject) (droneapi.BatchLogsResponseObject, error) {
	if f := r.s.batch(req.StepId, *req.Body); f != nil {
		return droneapi.BatchLogs500TextResponse(f.text), nil
	}
	return droneapi.BatchLogs200Response{}, nil
}

func (r droneRPC) UploadLogs(ctx context.Context, req droneapi.UploadLogsRequestObject) (droneapi.UploadLogsResponseObject, error) {
	raw, _ := ctx.Value(rawBodyKey{}).([]byte)
	if f := r.s.upload(req.StepId, raw); f != nil {
		return droneapi.UploadLogs500TextResponse(f.text), nil
	}
	return droneapi.UploadLogs200Response{}, nil
}

func (r droneRPC) UploadCard(_ context.Context, req droneapi.UploadCardRequestObject) (droneapi.UploadCardResponseObject, error) {
	r.s.card(req.StepId, *req.Body)
	return droneapi.UploadCard200Response{}, nil
}

// rawBodyKey carries the request body as it came, for the log upload, which stores it unparsed.
type rawBodyKey struct{}

// request waits for a pending stage without a machine that matches f, the lowest id first, until
// the poll timeout or ctx ends (ok false). A stage is offered to every runner that asks until one
// accepts it.
func (s *DroneServer) request(ctx context.Context, f droneapi.Filter) (droneapi.Stage, bool) {
	timer := time.NewTimer(s.opts.PollTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		st := s.firstMatch(f)
		changed := s.changed
		s.mu.Unlock()
		if st != nil {
			return *st, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return droneapi.Stage{}, false
		case <-ctx.Done():
			return droneapi.Stage{}, false
		}
	}
}

// firstMatch returns the pending stage without a machine, lowest id first, that f takes. Call
// with s.mu held.
func (s *DroneServer) firstMatch(f droneapi.Filter) *droneapi.Stage {
	ids := slices.Sorted(maps.Keys(s.stages))
	for _, id := range ids {
		st := s.stages[id].stage
		if st.Status != droneapi.StatusPending || st.Machine != "" || !filterMatches(f, st) {
			continue
		}
		out := copyStage(st)
		return &out
	}
	return nil
}

// filterMatches applies the server's matching rules: kind and type equal (empty meaning
// pipeline and docker); when the runner sets any of os, arch, variant or kernel, os and arch equal
// and variant and kernel equal where the stage sets them; when either side has labels, the same
// labels.
func filterMatches(f droneapi.Filter, st droneapi.Stage) bool {
	if orDefault(f.Kind, "pipeline") != orDefault(st.Kind, "pipeline") || orDefault(f.Type, "docker") != orDefault(st.Type, "docker") {
		return false
	}
	if f.Os != "" || f.Arch != "" || f.Variant != "" || f.Kernel != "" {
		if f.Os != st.Os || f.Arch != st.Arch {
			return false
		}
		if st.Variant != "" && st.Variant != f.Variant {
			return false
		}
		if st.Kernel != "" && st.Kernel != f.Kernel {
			return false
		}
	}
	if len(f.Labels) > 0 || len(st.Labels) > 0 {
		return maps.Equal(f.Labels, st.Labels)
	}
	return true
}

// accept gives the stage to machine: 409 when it has one already, else it becomes pending with
// that machine and its version goes up.
func (s *DroneServer) accept(id int64, machine string) (droneapi.Stage, *rpcFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stages[id]
	if !ok {
		return droneapi.Stage{}, failure(droneNoRows)
	}
	if st.stage.Machine != "" {
		return droneapi.Stage{}, conflict()
	}
	st.stage.Machine, st.stage.Status, st.stage.Updated = machine, droneapi.StatusPending, s.unix()
	st.stage.Version++
	s.notify()
	s.log.Info("Drone stage accepted", "stage", id, "machine", machine)
	return copyStage(st.stage), nil
}

// details is everything a runner needs for the stage. Secrets that pull requests may not read
// are left out of pull_request builds.
func (s *DroneServer) details(id int64) (droneapi.Details, *rpcFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stages[id]
	if !ok {
		return droneapi.Details{}, failure(droneNoRows)
	}
	b := s.builds[st.stage.BuildId]
	var secrets []droneapi.Secret
	for _, sec := range b.secrets {
		if b.build.Event == "pull_request" && !sec.PullRequest {
			continue
		}
		secrets = append(secrets, sec)
	}
	return droneapi.Details{
		Repository: *b.repo,
		Build:      s.buildWithStages(b),
		Stage:      copyStage(st.stage),
		Config:     droneapi.Config{Data: slices.Clone(b.yaml)},
		Secrets:    secrets,
		System:     s.opts.System,
		Netrc:      droneapi.Netrc{Machine: "git.example.com", Login: "octocat", Password: "mock-clone-token"},
	}, nil
}

// updateStage saves the stage the body names (the path id is ignored): "before all" for
// pending and running, "after all" for every other status.
func (s *DroneServer) updateStage(in droneapi.Stage) (droneapi.Stage, *rpcFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stages[in.Id]
	if !ok {
		return droneapi.Stage{}, failure(droneNoRows)
	}
	b := s.builds[st.stage.BuildId]
	defer s.notify()
	if in.Status == droneapi.StatusPending || in.Status == droneapi.StatusRunning {
		return s.beforeAll(b, st, in)
	}
	return s.afterAll(b, st, in)
}

// beforeAll saves the stage with the version check, then inserts every step (ids assigned,
// version 1), and starts the build. A step number used before fails the call after the stage
// was saved, as on the real server.
func (s *DroneServer) beforeAll(b *droneBuild, st *droneStage, in droneapi.Stage) (droneapi.Stage, *rpcFailure) {
	if in.Version != st.stage.Version {
		return droneapi.Stage{}, conflict()
	}
	s.saveStage(st, in)
	for _, in := range in.Steps {
		if in.StepId != st.stage.Id {
			return droneapi.Stage{}, failure(droneNoRows)
		}
		if slices.ContainsFunc(st.stepIDs, func(id int64) bool { return s.steps[id].step.Number == in.Number }) {
			return droneapi.Stage{}, failure(droneDupStep)
		}
		sp := copyStep(in)
		sp.Id, sp.Version, sp.Error = s.newID("step"), 1, cut(sp.Error)
		s.steps[sp.Id] = &droneStep{step: sp}
		st.stepIDs = append(st.stepIDs, sp.Id)
	}
	slices.SortFunc(st.stepIDs, func(a, c int64) int { return s.steps[a].step.Number - s.steps[c].step.Number })
	if b.build.Status == droneapi.StatusPending {
		now := s.unix()
		b.build.Status, b.build.Started, b.build.Updated = droneapi.StatusRunning, now, now
		b.build.Version++
	}
	s.log.Info("Drone stage started", "stage", st.stage.Id, "steps", len(in.Steps))
	return s.stageWithSteps(st), nil
}

// afterAll updates every step with its version check (the first conflict stops, leaving the
// stage unsaved), saves the stage, closes the streams left open, releases the stages waiting
// for this one and finalises the build once no stage is left to run. Steps the runner lists
// without an id were never inserted (an early failure) and are not stored.
func (s *DroneServer) afterAll(b *droneBuild, st *droneStage, in droneapi.Stage) (droneapi.Stage, *rpcFailure) {
	for _, inStep := range in.Steps {
		if inStep.Id == 0 {
			continue
		}
		sp, ok := s.steps[inStep.Id]
		if !ok {
			return droneapi.Stage{}, failure(droneNoRows)
		}
		if inStep.Version != sp.step.Version {
			return droneapi.Stage{}, conflict()
		}
		saveStep(sp, inStep)
	}
	if in.Version != st.stage.Version {
		return droneapi.Stage{}, conflict()
	}
	s.saveStage(st, in)
	for _, id := range st.stepIDs {
		s.steps[id].open = false
	}
	s.release(b)
	s.finalise(b)
	s.log.Info("Drone stage finished", "stage", st.stage.Id, "status", st.stage.Status)
	return s.stageWithSteps(st), nil
}

// saveStage stores the fields a runner may change and raises the version.
func (s *DroneServer) saveStage(st *droneStage, in droneapi.Stage) {
	cur := &st.stage
	cur.Status, cur.Error, cur.Errignore, cur.ExitCode = in.Status, cut(in.Error), in.Errignore, in.ExitCode
	cur.Machine, cur.Os, cur.Arch, cur.Variant, cur.Kernel = in.Machine, in.Os, in.Arch, in.Variant, in.Kernel
	cur.Started, cur.Stopped, cur.Created = in.Started, in.Stopped, in.Created
	cur.OnSuccess, cur.OnFailure = in.OnSuccess, in.OnFailure
	cur.DependsOn, cur.Labels = slices.Clone(in.DependsOn), maps.Clone(in.Labels)
	cur.Updated = s.unix()
	cur.Version++
}

// saveStep stores the fields a runner may change and raises the version.
func saveStep(sp *droneStep, in droneapi.Step) {
	cur := &sp.step
	cur.Name, cur.Status, cur.Error, cur.Errignore, cur.ExitCode = in.Name, in.Status, cut(in.Error), in.Errignore, in.ExitCode
	cur.Started, cur.Stopped, cur.Schema = in.Started, in.Stopped, in.Schema
	cur.DependsOn, cur.Image, cur.Detached = slices.Clone(in.DependsOn), in.Image, in.Detached
	cur.Version++
}

// release moves the stages waiting on dependencies that are all done to pending, or to skipped
// when their on_success / on_failure rules do not want to run after that outcome. Call with s.mu
// held.
func (s *DroneServer) release(b *droneBuild) {
	byName := map[string]droneapi.Stage{}
	for _, id := range b.stageIDs {
		byName[s.stages[id].stage.Name] = s.stages[id].stage
	}
	for _, id := range b.stageIDs {
		st := s.stages[id]
		if st.stage.Status != droneapi.StatusWaitingOnDependencies {
			continue
		}
		failed, ready := false, true
		for _, dep := range st.stage.DependsOn {
			d := byName[dep]
			if !droneDone(d.Status) {
				ready = false
				break
			}
			switch d.Status {
			case droneapi.StatusFailure, droneapi.StatusError, droneapi.StatusKilled:
				failed = true
			}
		}
		if !ready {
			continue
		}
		run := (failed && st.stage.OnFailure) || (!failed && st.stage.OnSuccess)
		st.stage.Status = droneapi.StatusPending
		if !run {
			st.stage.Status = droneapi.StatusSkipped
		}
		st.stage.Updated = s.unix()
		st.stage.Version++
	}
}

// finalise ends the build once no stage is pending, running, waiting, blocked or declined: the
// first stage (by id) that was killed, failed or errored gives the build its status, else it
// succeeded. Call with s.mu held.
func (s *DroneServer) finalise(b *droneBuild) {
	if droneDone(b.build.Status) {
		return
	}
	status := droneapi.StatusSuccess
	for _, id := range b.stageIDs {
		switch st := s.stages[id].stage.Status; st {
		case droneapi.StatusPending, droneapi.StatusRunning, droneapi.StatusWaitingOnDependencies,
			droneapi.StatusBlocked, droneapi.StatusDeclined:
			return
		case droneapi.StatusKilled, droneapi.StatusFailure, droneapi.StatusError:
			if status == droneapi.StatusSuccess {
				status = st
			}
		}
	}
	now := s.unix()
	b.build.Status, b.build.Finished, b.build.Updated = status, now, now
	b.build.Version++
	s.log.Info("Drone build finished", "build", b.build.Id, "status", status)
}

// updateStep saves the step the body names (the path id is ignored). Pending and running open
// (or reopen, emptied) the step's live log stream before the version check; any other status
// saves, then closes the stream.
func (s *DroneServer) updateStep(in droneapi.Step) (droneapi.Step, *rpcFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.steps[in.Id]
	if !ok {
		return droneapi.Step{}, failure(droneNoRows)
	}
	defer s.notify()
	before := in.Status == droneapi.StatusPending || in.Status == droneapi.StatusRunning
	if before {
		sp.open, sp.lines = true, nil
	}
	if in.Version != sp.step.Version {
		return droneapi.Step{}, conflict()
	}
	saveStep(sp, in)
	if !before {
		sp.open = false
	}
	return copyStep(sp.step), nil
}

// watch waits for a cancel of the build: 200 (true) when the build is cancelled while the watch
// is open, or when a cancel remembered from before is found at one of the periodic rechecks;
// 204 (false) when the poll times out or the client goes away.
func (s *DroneServer) watch(ctx context.Context, buildID int64) (bool, *rpcFailure) {
	s.mu.Lock()
	b, ok := s.builds[buildID]
	var signal chan struct{}
	if ok {
		signal = b.signal
		s.watching[buildID]++
	}
	s.mu.Unlock()
	if !ok {
		return false, failure(droneNoRows)
	}
	defer func() {
		s.mu.Lock()
		s.watching[buildID]--
		s.mu.Unlock()
	}()
	timeout := time.NewTimer(s.opts.PollTimeout)
	defer timeout.Stop()
	recheck := time.NewTicker(s.opts.CancelRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-signal:
			return true, nil
		case <-recheck.C:
			s.mu.Lock()
			remembered := b.cancelled && s.now().Sub(b.cancelledAt) < s.opts.CancelMemory
			s.mu.Unlock()
			if remembered {
				return true, nil
			}
		case <-timeout.C:
			return false, nil
		case <-ctx.Done():
			return false, nil
		}
	}
}

// batch appends lines to the step's live stream, which keeps the last droneLiveLines.
func (s *DroneServer) batch(stepID int64, lines []droneapi.Line) *rpcFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.steps[stepID]
	if !ok || !sp.open {
		return failure(droneNoStream)
	}
	sp.lines = append(sp.lines, lines...)
	if over := len(sp.lines) - droneLiveLines; over > 0 {
		sp.lines = slices.Delete(sp.lines, 0, over)
	}
	s.notify()
	return nil
}

// upload stores the raw body as the step's log; a second upload fails like the database's
// primary key does.
func (s *DroneServer) upload(stepID int64, raw []byte) *rpcFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.steps[stepID]
	if !ok {
		return failure(droneNoRows)
	}
	if sp.uploaded {
		return failure(droneDupLogUpload)
	}
	sp.uploaded, sp.log = true, slices.Clone(raw)
	s.notify()
	return nil
}

// card stores the step's card; like the real server, a step it cannot find is only logged.
func (s *DroneServer) card(stepID int64, in droneapi.CardInput) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.steps[stepID]
	if !ok {
		s.log.Warn("card for an unknown step dropped", "step", stepID)
		return
	}
	sp.card = &in
	s.notify()
}
