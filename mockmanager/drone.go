package mockmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite/errs"
	droneapi "github.com/dlite-dev/dlite/gen/drone"
	droneadmin "github.com/dlite-dev/dlite/gen/droneadmin"
)

// The Drone admin API's models, under names that read well from this package.
type (
	// NewBuild is a Drone build to queue: its YAML, repository and build facts, secrets and
	// stages.
	NewBuild = droneadmin.NewBuild
	// NewRepo is the repository of a NewBuild.
	NewRepo = droneadmin.NewRepo
	// NewSecret is a secret of a NewBuild.
	NewSecret = droneadmin.NewSecret
	// NewStage is a stage of a NewBuild.
	NewStage = droneadmin.NewStage
	// BuildState is a Drone build as the mock server holds it, with its stages and steps.
	BuildState = droneadmin.BuildState
	// StageState is a Drone stage with its steps.
	StageState = droneadmin.StageState
	// StepState is a Drone step with its live log lines and uploaded log.
	StepState = droneadmin.StepState
	// RequestCount is how many runner RPC requests one route answered with one status.
	RequestCount = droneadmin.RequestCount
)

// Defaults of DroneOptions, the real server's values.
const (
	// DefaultDronePollTimeout is how long the stage request and build watch long polls wait.
	DefaultDronePollTimeout = 30 * time.Second
	// DefaultDroneCancelRecheck is how often a watch looks at the remembered cancels. Being
	// longer than the poll timeout, it means that a cancel made while no watch is open is never
	// delivered by a watch: the gap of the real server.
	DefaultDroneCancelRecheck = time.Minute
	// DefaultDroneCancelMemory is how long a cancel is remembered.
	DefaultDroneCancelMemory = 5 * time.Minute
	// droneLiveLines is how many lines a step's live log stream keeps.
	droneLiveLines = 5000
	// droneMaxError is how much of an error text the server keeps.
	droneMaxError = 500
)

// The texts the real server answers with.
const (
	droneNoRows       = "sql: no rows in result set"
	droneNoStream     = "stream: not found"
	droneLockError    = "Optimistic Lock Error"
	droneDupStep      = "UNIQUE constraint failed: steps.step_stage_id, steps.step_number"
	droneDupLogUpload = "UNIQUE constraint failed: logs.log_id"
)

// ErrBuildDone is returned by CancelBuild for a build that is already done.
var ErrBuildDone = errors.New("build already done")

// DroneOptions configures a DroneServer. The zero value serves a server that refuses every
// runner (no secret), with the real server's timings.
type DroneOptions struct {
	// Secret is the RPC secret (DRONE_RPC_SECRET) runners must send as X-Drone-Token. Empty
	// makes every RPC call answer 403, as the real server does.
	Secret string
	// Logger receives the server's logs; nil discards them. The secret is never logged.
	Logger *slog.Logger
	// Now is the clock for timestamps and remembered cancels; nil means time.Now.
	Now func() time.Time
	// PollTimeout is how long a stage request or build watch waits before answering 204;
	// 0 means DefaultDronePollTimeout. Tests use a short one.
	PollTimeout time.Duration
	// CancelRecheck is how often a watch looks at the cancels remembered from before it was
	// opened; 0 means DefaultDroneCancelRecheck. Below PollTimeout, a watch opened after a cancel
	// answers 200 after this delay; at the default, never.
	CancelRecheck time.Duration
	// CancelMemory is how long a cancel is remembered for later watches; 0 means
	// DefaultDroneCancelMemory.
	CancelMemory time.Duration
	// System is what stage details report as the server's address and version.
	System droneapi.System
}

// DroneServer is a mock Drone server: builds, stages and steps, the runner RPC v2
// (openapi/drone.yaml) that runners talk to, with the real server's rules, and the admin API
// (openapi/drone-admin.yaml) and Go methods that tests drive it with. Its methods are safe for
// concurrent use.
type DroneServer struct {
	opts    DroneOptions
	log     *slog.Logger
	now     func() time.Time
	handler *echo.Echo

	mu       sync.Mutex
	nextID   map[string]int64
	repos    map[string]*droneapi.Repo
	builds   map[int64]*droneBuild
	stages   map[int64]*droneStage
	steps    map[int64]*droneStep
	order    []int64
	requests map[requestKey]int64
	open     map[string]int
	// watching counts, by build id, the watches that listen for the build's cancel signal.
	watching map[int64]int
	// changed is closed and replaced on every change of state, waking long polls and waiters.
	changed chan struct{}
}

type requestKey struct {
	route  string
	status int
}

type droneBuild struct {
	build     droneapi.Build
	repo      *droneapi.Repo
	yaml      []byte
	secrets   []droneapi.Secret
	stageIDs  []int64
	cancelled bool
	// cancelledAt is when the build was cancelled, for the watches opened later.
	cancelledAt time.Time
	// signal is closed by a cancel, telling the watches open at that moment; a new one then
	// serves the watches opened later.
	signal chan struct{}
}

type droneStage struct {
	stage   droneapi.Stage
	stepIDs []int64
}

type droneStep struct {
	step     droneapi.Step
	lines    []droneapi.Line
	open     bool
	uploaded bool
	log      []byte
	card     *droneapi.CardInput
}

// NewDrone returns a DroneServer configured by opts. It fails with an error matching
// errs.ErrInvalidConfig when a duration is negative.
func NewDrone(opts DroneOptions) (*DroneServer, error) {
	const op = "mock Drone server"
	for name, d := range map[string]time.Duration{"PollTimeout": opts.PollTimeout, "CancelRecheck": opts.CancelRecheck, "CancelMemory": opts.CancelMemory} {
		if d < 0 {
			return nil, errs.Newf(errs.CodeInvalidConfig, op, "%s must not be negative, got %s", name, d)
		}
	}
	if opts.PollTimeout == 0 {
		opts.PollTimeout = DefaultDronePollTimeout
	}
	if opts.CancelRecheck == 0 {
		opts.CancelRecheck = DefaultDroneCancelRecheck
	}
	if opts.CancelMemory == 0 {
		opts.CancelMemory = DefaultDroneCancelMemory
	}
	s := &DroneServer{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		nextID:   map[string]int64{},
		repos:    map[string]*droneapi.Repo{},
		builds:   map[int64]*droneBuild{},
		stages:   map[int64]*droneStage{},
		steps:    map[int64]*droneStep{},
		requests: map[requestKey]int64{},
		open:     map[string]int{},
		watching: map[int64]int{},
		changed:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	h, err := s.newHandler(droneRPC{s})
	if err != nil {
		return nil, err
	}
	s.handler = h
	return s, nil
}

// Handler returns the HTTP handler serving the runner RPC under /rpc/v2 and the admin API under
// /admin/drone.
func (s *DroneServer) Handler() http.Handler { return s.handler }

// Secret returns the RPC secret runners must send.
func (s *DroneServer) Secret() string { return s.opts.Secret }

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves until Shutdown or Close.
func (s *DroneServer) Start(addr string) (*Running, error) {
	return startServing("mock Drone server", s.handler, s.log, addr)
}

// ListenAndServe serves on addr until ctx ends, then shuts down gracefully. ready, if not nil, is
// called with the server's URL once it listens.
func (s *DroneServer) ListenAndServe(ctx context.Context, addr string, ready func(url string)) error {
	r, err := s.Start(addr)
	if err != nil {
		return err
	}
	return r.serveUntil(ctx, ready)
}

// notify wakes every long poll and waiter. Call with s.mu held.
func (s *DroneServer) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *DroneServer) newID(kind string) int64 {
	s.nextID[kind]++
	return s.nextID[kind]
}

func (s *DroneServer) unix() int64 { return s.now().Unix() }

// QueueBuild queues a build. Stages without dependencies are pending at once; the others wait
// for theirs. It fails with an error matching errs.ErrInvalidTaskData when the build cannot be
// (no stages, a stage name used twice, a dependency that is not a stage of the build).
func (s *DroneServer) QueueBuild(nb NewBuild) (BuildState, error) {
	const op = "queue Drone build"
	if len(nb.Stages) == 0 {
		return BuildState{}, errs.New(errs.CodeInvalidTaskData, op, "a build needs at least one stage")
	}
	names := map[string]bool{}
	for _, st := range nb.Stages {
		if st.Name == "" {
			return BuildState{}, errs.New(errs.CodeInvalidTaskData, op, "every stage needs a name")
		}
		if names[st.Name] {
			return BuildState{}, errs.Newf(errs.CodeInvalidTaskData, op, "stage name %q is used twice", st.Name)
		}
		names[st.Name] = true
	}
	for _, st := range nb.Stages {
		for _, dep := range st.DependsOn {
			if !names[dep] || dep == st.Name {
				return BuildState{}, errs.Newf(errs.CodeInvalidTaskData, op, "stage %q depends on %q, which is not another stage of the build", st.Name, dep)
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.unix()
	repo := s.repoFor(nb.Repo, now)
	repo.Counter++
	event := orDefault(nb.Event, "push")
	target := orDefault(nb.Target, repo.DefaultBranch)
	b := &droneBuild{
		repo:   repo,
		yaml:   []byte(nb.Yaml),
		signal: make(chan struct{}),
		build: droneapi.Build{
			Id: s.newID("build"), RepoId: repo.Id, Trigger: "@hook", Number: repo.Counter,
			Status: droneapi.StatusPending, Event: event, Action: nb.Action,
			Link: nb.Link, Timestamp: now, Title: nb.Title, Message: orDefault(nb.Message, "mock build"),
			Before: nb.Before, After: orDefault(nb.After, "0000000000000000000000000000000000000000"),
			Ref: orDefault(nb.Ref, "refs/heads/"+target), SourceRepo: repo.Slug,
			Source: orDefault(nb.Source, target), Target: target,
			AuthorLogin: orDefault(nb.AuthorLogin, "octocat"), AuthorName: nb.AuthorName,
			AuthorEmail: nb.AuthorEmail, AuthorAvatar: nb.AuthorAvatar,
			Sender: orDefault(nb.Sender, orDefault(nb.AuthorLogin, "octocat")),
			Params: maps.Clone(nb.Params), Cron: nb.Cron, DeployTo: nb.DeployTo, Debug: nb.Debug,
			Created: now, Updated: now, Version: 1,
		},
	}
	for _, sec := range nb.Secrets {
		b.secrets = append(b.secrets, droneapi.Secret{
			Id: s.newID("secret"), RepoId: repo.Id, Name: sec.Name, Data: sec.Data, PullRequest: sec.PullRequest,
		})
	}
	for i, ns := range nb.Stages {
		status := droneapi.StatusPending
		if len(ns.DependsOn) > 0 {
			status = droneapi.StatusWaitingOnDependencies
		}
		onSuccess := ns.OnSuccess || !ns.OnFailure
		st := &droneStage{stage: droneapi.Stage{
			Id: s.newID("stage"), RepoId: repo.Id, BuildId: b.build.Id, Number: i + 1, Name: ns.Name,
			Kind: orDefault(ns.Kind, "pipeline"), Type: orDefault(ns.Type, "docker"), Status: status,
			Os: orDefault(ns.Os, "linux"), Arch: orDefault(ns.Arch, "amd64"), Variant: ns.Variant, Kernel: ns.Kernel,
			Labels: maps.Clone(ns.Labels), DependsOn: slices.Clone(ns.DependsOn),
			OnSuccess: onSuccess, OnFailure: ns.OnFailure, Created: now, Updated: now, Version: 1,
		}}
		s.stages[st.stage.Id] = st
		b.stageIDs = append(b.stageIDs, st.stage.Id)
	}
	s.builds[b.build.Id] = b
	s.order = append(s.order, b.build.Id)
	s.notify()
	s.log.Info("Drone build queued", "build", b.build.Id, "repo", repo.Slug, "stages", len(b.stageIDs))
	return s.buildState(b), nil
}

// repoFor returns the repository nr names, creating it the first time. Call with s.mu held.
func (s *DroneServer) repoFor(nr NewRepo, now int64) *droneapi.Repo {
	ns, name := orDefault(nr.Namespace, "octocat"), orDefault(nr.Name, "hello-world")
	slug := ns + "/" + name
	if r, ok := s.repos[slug]; ok {
		return r
	}
	timeout := nr.Timeout
	if timeout == 0 {
		timeout = 60
	}
	r := &droneapi.Repo{
		Id: s.newID("repo"), Uid: fmt.Sprint(s.nextID["repo"]), UserId: 1, Namespace: ns, Name: name, Slug: slug,
		Scm: "git", GitHttpUrl: orDefault(nr.GitHttpUrl, "https://git.example.com/"+slug+".git"),
		GitSshUrl: "git@git.example.com:" + slug + ".git", Link: orDefault(nr.Link, "https://git.example.com/"+slug),
		DefaultBranch: orDefault(nr.DefaultBranch, "main"), Private: nr.Private, Visibility: "public",
		Active: true, ConfigPath: ".drone.yml", Trusted: nr.Trusted, Timeout: timeout,
		Synced: now, Created: now, Updated: now, Version: 1, Secret: orDefault(nr.Secret, randomHex(16)),
	}
	if nr.Private {
		r.Visibility = "private"
	}
	s.repos[slug] = r
	return r
}

// CancelBuild cancels a build the way a user does: the build becomes killed, every stage and
// step not done becomes killed if it had started and skipped if not (steps with exit code 130),
// and the watches open on the build answer 200. It fails with an error matching
// errs.ErrNotFound for an unknown build, and ErrBuildDone for a build that is done.
func (s *DroneServer) CancelBuild(id int64) (BuildState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return BuildState{}, errs.Newf(errs.CodeNotFound, "cancel Drone build", "no build %d", id)
	}
	if droneDone(b.build.Status) {
		return BuildState{}, fmt.Errorf("cancel Drone build %d: %w (%s)", id, ErrBuildDone, b.build.Status)
	}
	now := s.unix()
	b.build.Status, b.build.Finished, b.build.Updated = droneapi.StatusKilled, now, now
	b.build.Version++
	for _, sid := range b.stageIDs {
		st := s.stages[sid]
		if droneDone(st.stage.Status) {
			continue
		}
		for _, pid := range st.stepIDs {
			sp := s.steps[pid]
			if droneDone(sp.step.Status) {
				continue
			}
			sp.step.Status = startedOr(sp.step.Started, droneapi.StatusKilled, droneapi.StatusSkipped)
			sp.step.ExitCode, sp.step.Stopped = 130, now
			sp.step.Version++
		}
		st.stage.Status = startedOr(st.stage.Started, droneapi.StatusKilled, droneapi.StatusSkipped)
		st.stage.Stopped, st.stage.Updated = now, now
		st.stage.Version++
	}
	b.cancelled, b.cancelledAt = true, s.now()
	close(b.signal)
	b.signal = make(chan struct{})
	s.notify()
	s.log.Info("Drone build cancelled", "build", id)
	return s.buildState(b), nil
}

func startedOr(started int64, ifStarted, otherwise droneapi.Status) droneapi.Status {
	if started != 0 {
		return ifStarted
	}
	return otherwise
}

// Build returns one build with its stages and steps, or an error matching errs.ErrNotFound.
func (s *DroneServer) Build(id int64) (BuildState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return BuildState{}, errs.Newf(errs.CodeNotFound, "read Drone build", "no build %d", id)
	}
	return s.buildState(b), nil
}

// Builds returns every build, oldest first.
func (s *DroneServer) Builds() []BuildState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BuildState, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.buildState(s.builds[id]))
	}
	return out
}

// Stage returns one stage with its steps, or an error matching errs.ErrNotFound.
func (s *DroneServer) Stage(id int64) (StageState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stages[id]
	if !ok {
		return StageState{}, errs.Newf(errs.CodeNotFound, "read Drone stage", "no stage %d", id)
	}
	return s.stageState(st), nil
}

// Step returns one step with its logs, or an error matching errs.ErrNotFound.
func (s *DroneServer) Step(id int64) (StepState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.steps[id]
	if !ok {
		return StepState{}, errs.Newf(errs.CodeNotFound, "read Drone step", "no step %d", id)
	}
	return stepState(sp), nil
}

// WaitBuild waits until the build is done (success, failure, error, killed, ...) or ctx ends, and
// returns it.
func (s *DroneServer) WaitBuild(ctx context.Context, id int64) (BuildState, error) {
	for {
		s.mu.Lock()
		b, ok := s.builds[id]
		changed := s.changed
		var st BuildState
		if ok {
			st = s.buildState(b)
		}
		s.mu.Unlock()
		switch {
		case !ok:
			return BuildState{}, errs.Newf(errs.CodeNotFound, "wait for Drone build", "no build %d", id)
		case droneDone(st.Build.Status):
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, fmt.Errorf("wait for Drone build %d (%s): %w", id, st.Build.Status, ctx.Err())
		}
	}
}

// Requests returns how many runner RPC requests each route answered with each status, by route
// then status. The route is the operation id of openapi/drone.yaml, or "unrouted".
func (s *DroneServer) Requests() []RequestCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RequestCount, 0, len(s.requests))
	for k, n := range s.requests {
		out = append(out, RequestCount{Route: k.route, Status: k.status, Count: n})
	}
	slices.SortFunc(out, func(a, b RequestCount) int {
		if a.Route != b.Route {
			if a.Route < b.Route {
				return -1
			}
			return 1
		}
		return a.Status - b.Status
	})
	return out
}

// RequestCount returns how many requests route answered with status; a status of 0 counts every
// status.
func (s *DroneServer) RequestCount(route string, status int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, c := range s.requests {
		if k.route == route && (status == 0 || k.status == status) {
			n += c
		}
	}
	return n
}

// OpenRequests returns how many requests to route are being served right now: the long polls
// (RequestStage, WatchBuild) a runner holds open.
func (s *DroneServer) OpenRequests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[route]
}

// Watching returns how many watches of the build listen for its cancel signal now. A watch
// request is open (OpenRequests) a little before it listens; a cancel in between reaches it only
// as a remembered cancel, as on the real server.
func (s *DroneServer) Watching(buildID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watching[buildID]
}

// beginRequest marks a request to route as being served.
func (s *DroneServer) beginRequest(route string) {
	s.mu.Lock()
	s.open[route]++
	s.mu.Unlock()
}

// endRequest counts a served request by route and status.
func (s *DroneServer) endRequest(route string, status int) {
	s.mu.Lock()
	s.open[route]--
	s.requests[requestKey{route, status}]++
	s.mu.Unlock()
}

// buildState copies a build out. Call with s.mu held.
func (s *DroneServer) buildState(b *droneBuild) BuildState {
	st := BuildState{Build: s.buildWithStages(b), Cancelled: b.cancelled, Stages: []StageState{}}
	for _, sid := range b.stageIDs {
		st.Stages = append(st.Stages, s.stageState(s.stages[sid]))
	}
	return st
}

// buildWithStages is the build as stage details carry it: all its stages, without steps. Call
// with s.mu held.
func (s *DroneServer) buildWithStages(b *droneBuild) droneapi.Build {
	out := b.build
	out.Params = maps.Clone(b.build.Params)
	out.Stages = []droneapi.Stage{}
	for _, sid := range b.stageIDs {
		out.Stages = append(out.Stages, copyStage(s.stages[sid].stage))
	}
	return out
}

// stageState copies a stage out, with its steps by number. Call with s.mu held.
func (s *DroneServer) stageState(st *droneStage) StageState {
	out := StageState{Stage: copyStage(st.stage), Steps: []StepState{}}
	for _, pid := range st.stepIDs {
		out.Steps = append(out.Steps, stepState(s.steps[pid]))
	}
	return out
}

// stageWithSteps is a stage as the RPC answers it, with its steps. Call with s.mu held.
func (s *DroneServer) stageWithSteps(st *droneStage) droneapi.Stage {
	out := copyStage(st.stage)
	for _, pid := range st.stepIDs {
		out.Steps = append(out.Steps, copyStep(s.steps[pid].step))
	}
	return out
}

func stepState(sp *droneStep) StepState {
	out := StepState{
		Step:       copyStep(sp.step),
		Lines:      append([]droneapi.Line{}, sp.lines...),
		StreamOpen: sp.open,
		Uploaded:   sp.uploaded,
		Log:        string(sp.log),
	}
	if sp.card != nil {
		c := *sp.card
		out.Card = &c
	}
	return out
}

func copyStage(st droneapi.Stage) droneapi.Stage {
	st.Labels = maps.Clone(st.Labels)
	st.DependsOn = slices.Clone(st.DependsOn)
	st.Steps = nil
	return st
}

func copyStep(sp droneapi.Step) droneapi.Step {
	sp.DependsOn = slices.Clone(sp.DependsOn)
	return sp
}

// droneDone reports whether a status is final: anything but pending, running, blocked and
// waiting_on_dependencies.
func droneDone(st droneapi.Status) bool {
	switch st {
	case droneapi.StatusPending, droneapi.StatusRunning, droneapi.StatusBlocked, droneapi.StatusWaitingOnDependencies:
		return false
	}
	return true
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// cut keeps the first droneMaxError bytes of an error text, as the server's store does.
func cut(s string) string {
	if len(s) > droneMaxError {
		return s[:droneMaxError]
	}
	return s
}
