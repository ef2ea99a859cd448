package pipeline

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// Docker workspace defaults, as Drone's docker runner uses them.
const (
	// DockerWorkspaceBase is the directory docker steps' workspaces live under.
	DockerWorkspaceBase = "/drone"
	// DefaultWorkspacePath is the workspace's path under the base when the pipeline sets none.
	DefaultWorkspacePath = "src"
)

// Facts are what the stage's details say about the run (the wire's own objects), and the one
// runner setting a plan names.
type Facts struct {
	Repo    gen.Repo
	Build   gen.Build
	Stage   gen.Stage
	System  gen.System
	Secrets []gen.Secret
	// Netrc are the credentials the clone step fetches the repository with.
	Netrc gen.Netrc
	// CloneImage is the image the clone step of a docker pipeline runs in.
	CloneImage string
}

// Plan is what a stage will run: the steps that may run, numbered as they are reported, and the
// names of those whose `when` can never match (they are not reported at all).
type Plan struct {
	// Pipeline is the planned pipeline.
	Pipeline *Pipeline
	// Steps are the steps that may run, numbered from 1: the clone step unless the pipeline
	// disables it, then the pipeline's steps in file order.
	Steps []*PlannedStep
	// Excluded are the steps whose conditions other than status rule them out; a runner does
	// not report them.
	Excluded []string
	// Workspace is the workspace's absolute path for docker pipelines, where their steps see it
	// (/drone/src unless the pipeline says otherwise); for exec pipelines it is the path relative
	// to the directory the runner makes for the stage.
	Workspace string
	// Secrets are the values of every secret the plan reads, the clone credentials' password
	// among them, longest first, to mask in logs.
	Secrets []string
}

// PlannedStep is a step with everything resolved.
type PlannedStep struct {
	// Number is the step's 1-based number on the wire.
	Number int
	// Step is the parsed step; for the clone step, a step with its name only.
	Step *Step
	// Name and Image are the step's.
	Name  string
	Image string
	// DependsOn are the planned steps this one waits for: its depends_on, without the excluded
	// steps; or, in a pipeline where no step has depends_on, the step before it; and the clone
	// step when that leaves none.
	DependsOn []string
	// Env is the step's environment: the DRONE_* variables, the build's parameters, the
	// pipeline's environment, the step's environment and its settings as PLUGIN_* variables,
	// later ones winning. DRONE_BUILD_STATUS and DRONE_STAGE_STATUS are set by the Scheduler
	// when the step starts.
	Env map[string]string
	// ErrIgnore is true for `failure: ignore`: the step's failure does not fail the stage.
	ErrIgnore bool
	// Detach is true for a step that runs in the background.
	Detach bool
	// RunOn is when the step runs, by the stage's status so far: success (the default), failure,
	// or both.
	RunOn Condition
	// Error says why the step cannot run (a secret it reads is missing); the step then ends with
	// status error without running.
	Error string
	// Clone, set on the clone step only, is what it fetches. Its Env holds the credentials
	// (DRONE_NETRC_*) and the build's facts; the runner decides how it runs.
	Clone *CloneSpec
}

var pluginKey = regexp.MustCompile(`[^A-Za-z0-9]+`)

// NewPlan plans pipeline p for the run the facts describe. It does not fail: what cannot run is
// said in the steps' Error.
//
// Unless the pipeline disables it, the plan starts with the clone step (CloneStep, number 1),
// which fetches the build's commit into the workspace; every other step runs after it: the steps
// that depend on nothing else depend on it, and the others on them.
func NewPlan(p *Pipeline, f Facts) *Plan {
	plan := &Plan{Pipeline: p}
	ws := workspaceOf(p)
	plan.Workspace = ws.full
	secrets := map[string]string{}
	for _, s := range f.Secrets {
		secrets[s.Name] = s.Data
	}
	used := map[string]bool{}
	// resolve sets name in env to v, reading secrets; a secret that is missing is a problem.
	resolve := func(env map[string]string, problems *[]string, where, name string, v Value) {
		if v.FromSecret == "" {
			env[name] = v.Literal
			return
		}
		data, ok := secrets[v.FromSecret]
		if !ok {
			*problems = append(*problems, fmt.Sprintf("secret %q is not available (read by %s %s)", v.FromSecret, where, name))
			return
		}
		used[v.FromSecret] = true
		env[name] = data
	}
	base := baseEnv(p, f, ws)
	// stepEnv is the environment of the step named name: the base, the step's name and number,
	// and the pipeline's environment.
	stepEnv := func(name string, number int, problems *[]string) map[string]string {
		env := maps.Clone(base)
		env["DRONE_STEP_NAME"] = name
		env["DRONE_STEP_NUMBER"] = fmt.Sprint(number)
		for _, k := range slices.Sorted(maps.Keys(p.Environment)) {
			resolve(env, problems, "the pipeline environment", k, p.Environment[k])
		}
		return env
	}

	clone := !p.Clone.Disable
	if clone {
		ps := &PlannedStep{
			Number: 1,
			Step:   &Step{Name: CloneStep},
			Name:   CloneStep,
			RunOn:  Condition{Include: []string{"success"}},
			Clone:  newCloneSpec(p, f),
		}
		if p.Type == TypeDocker {
			ps.Image = f.CloneImage
		}
		var problems []string
		ps.Env = stepEnv(CloneStep, ps.Number, &problems)
		cloneEnv(ps.Env, p, f.Netrc)
		if f.Netrc.Machine != "" && f.Netrc.Password != "" {
			// The step hands the password to git; nothing it prints may show it.
			plan.Secrets = append(plan.Secrets, f.Netrc.Password)
		}
		ps.Error = strings.Join(problems, "; ")
		plan.Steps = append(plan.Steps, ps)
	}

	serial := !slices.ContainsFunc(p.Steps, func(s *Step) bool { return len(s.DependsOn) > 0 })
	excluded := map[string]bool{}
	for _, s := range p.Steps {
		if !staticMatch(s.When, f) {
			excluded[s.Name] = true
			plan.Excluded = append(plan.Excluded, s.Name)
		}
	}
	prev := ""
	for _, s := range p.Steps {
		if excluded[s.Name] {
			continue
		}
		ps := &PlannedStep{
			Number:    len(plan.Steps) + 1,
			Step:      s,
			Name:      s.Name,
			Image:     s.Image,
			ErrIgnore: s.Failure == "ignore",
			Detach:    s.Detach,
			RunOn:     s.When.Status,
		}
		if ps.RunOn.IsEmpty() {
			ps.RunOn = Condition{Include: []string{"success"}}
		}
		switch {
		case serial && prev != "":
			ps.DependsOn = []string{prev}
		case !serial:
			for _, d := range s.DependsOn {
				if !excluded[d] {
					ps.DependsOn = append(ps.DependsOn, d)
				}
			}
		}
		if clone && len(ps.DependsOn) == 0 {
			ps.DependsOn = []string{CloneStep}
		}
		prev = s.Name

		var problems []string
		env := stepEnv(s.Name, ps.Number, &problems)
		for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
			resolve(env, &problems, "environment", k, s.Environment[k])
		}
		for _, k := range slices.Sorted(maps.Keys(s.Settings)) {
			name := "PLUGIN_" + strings.Trim(strings.ToUpper(pluginKey.ReplaceAllString(k, "_")), "_")
			param := s.Settings[k]
			if param.FromSecret != "" {
				resolve(env, &problems, "setting", name, Value{FromSecret: param.FromSecret})
				continue
			}
			v, err := encodeSetting(param.Value)
			if err != nil {
				problems = append(problems, fmt.Sprintf("setting %s cannot be encoded: %v", k, err))
				continue
			}
			env[name] = v
		}
		ps.Env = env
		if len(problems) > 0 {
			ps.Error = strings.Join(problems, "; ")
		}
		plan.Steps = append(plan.Steps, ps)
	}
	for name := range used {
		if v := secrets[name]; v != "" {
			plan.Secrets = append(plan.Secrets, v)
		}
	}
	sort.Slice(plan.Secrets, func(i, j int) bool {
		if len(plan.Secrets[i]) != len(plan.Secrets[j]) {
			return len(plan.Secrets[i]) > len(plan.Secrets[j])
		}
		return plan.Secrets[i] < plan.Secrets[j]
	})
	plan.Secrets = slices.Compact(plan.Secrets)
	return plan
}

// workspace is where a pipeline's sources are: base and path joined make full. For docker
// pipelines a relative workspace path (src by default) lies under DockerWorkspaceBase, and an
// absolute one is its own base; exec pipelines have only the relative path, under the directory
// the runner makes for the stage.
type workspace struct {
	base, path, full string
}

func workspaceOf(p *Pipeline) workspace {
	rel := p.Workspace.Path
	if rel == "" {
		rel = DefaultWorkspacePath
	}
	if p.Type != TypeDocker {
		return workspace{path: p.Workspace.Path, full: rel}
	}
	if path.IsAbs(rel) {
		return workspace{base: path.Clean(rel), full: path.Clean(rel)}
	}
	return workspace{base: DockerWorkspaceBase, path: rel, full: path.Join(DockerWorkspaceBase, rel)}
}

// encodeSetting turns a setting into the text of its PLUGIN_ variable the way Drone plugins read
// it: strings, numbers and booleans as written; a list of those joined with commas; anything
// else (maps, lists holding maps or lists) as JSON.
func encodeSetting(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, item := range v {
			switch item.(type) {
			case string, bool, int, int64, uint64, float64:
				parts = append(parts, fmt.Sprint(item))
			default:
				return toJSON(v)
			}
		}
		return strings.Join(parts, ","), nil
	default:
		return toJSON(v)
	}
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// jsonable turns the map[any]any a YAML decoder may produce into map[string]any.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = jsonable(x)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[fmt.Sprint(k)] = jsonable(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = jsonable(x)
		}
		return out
	default:
		return v
	}
}

// staticMatch reports whether the conditions known before the stage runs (all but status) let
// the step run.
func staticMatch(w Conditions, f Facts) bool {
	return w.Branch.Match(f.Build.Target) &&
		w.Event.Match(f.Build.Event) &&
		w.Ref.Match(f.Build.Ref) &&
		w.Target.Match(f.Build.DeployTo) &&
		w.Instance.Match(f.System.Host) &&
		w.Action.Match(f.Build.Action) &&
		w.Cron.Match(f.Build.Cron) &&
		w.Repo.Match(f.Repo.Slug)
}
