package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Pipeline types this package plans.
const (
	// TypeExec runs steps as processes on the runner's host.
	TypeExec = "exec"
	// TypeDocker runs steps in containers.
	TypeDocker = "docker"
)

// Errors a parse or a lookup can match with errors.Is.
var (
	// ErrSyntax: the file is not valid YAML, or a value has the wrong shape.
	ErrSyntax = errors.New("invalid pipeline YAML")
	// ErrInvalid: the file parses but describes a pipeline that cannot run (an unknown type,
	// steps without names, a depends_on cycle, ...).
	ErrInvalid = errors.New("invalid pipeline")
	// ErrNoPipeline: no pipeline in the file has the stage's name.
	ErrNoPipeline = errors.New("no pipeline with that name")
)

// File is a parsed Drone YAML file: its pipeline documents in order. Documents of other kinds
// (secret, signature, template) are left out.
type File struct {
	Pipelines []*Pipeline
}

// Pipeline is one `kind: pipeline` document.
type Pipeline struct {
	// Kind is always "pipeline".
	Kind string `yaml:"kind"`
	// Type is exec or docker; empty in the file means docker.
	Type string `yaml:"type"`
	// Name is the stage name; empty in the file means "default".
	Name string `yaml:"name"`
	// Platform says where the stage must run.
	Platform Platform `yaml:"platform"`
	// Workspace says where the sources are checked out.
	Workspace Workspace `yaml:"workspace"`
	// Clone configures the automatic clone.
	Clone Clone `yaml:"clone"`
	// Environment is given to every step, before the step's own.
	Environment map[string]Value `yaml:"environment"`
	// Volumes are the stage's volumes that docker steps mount by name.
	Volumes []Volume `yaml:"volumes"`
	// Steps are the pipeline's steps, in file order.
	Steps []*Step `yaml:"steps"`
	// DependsOn names the stages that must finish first; the server applies it.
	DependsOn []string `yaml:"depends_on"`
}

// Platform is a stage's os and architecture.
type Platform struct {
	OS      string `yaml:"os"`
	Arch    string `yaml:"arch"`
	Variant string `yaml:"variant"`
	Version string `yaml:"version"`
}

// Workspace is where the sources go: Path, relative to the runner's base directory (/drone for
// docker), or absolute.
type Workspace struct {
	Path string `yaml:"path"`
}

// Clone configures the clone step (CloneStep): Disable leaves it out, Depth limits how many
// commits it fetches (0: all), SkipVerify lets it fetch from a server whose certificate does not
// verify.
type Clone struct {
	Disable    bool `yaml:"disable"`
	Depth      int  `yaml:"depth"`
	SkipVerify bool `yaml:"skip_verify"`
}

// Volume is a stage volume: a temporary one, or a host path.
type Volume struct {
	Name string      `yaml:"name"`
	Temp *TempVolume `yaml:"temp"`
	Host *HostVolume `yaml:"host"`
}

// TempVolume is an empty volume that lives as long as the stage; Medium "memory" asks for tmpfs.
type TempVolume struct {
	Medium string `yaml:"medium"`
}

// HostVolume is a directory of the host.
type HostVolume struct {
	Path string `yaml:"path"`
}

// VolumeMount mounts a stage volume into a step.
type VolumeMount struct {
	Name string `yaml:"name"`
	Path string `yaml:"path"`
}

// Step is one step of a pipeline.
type Step struct {
	Name        string               `yaml:"name"`
	Image       string               `yaml:"image"`
	Pull        string               `yaml:"pull"`
	Commands    []string             `yaml:"commands"`
	Entrypoint  []string             `yaml:"entrypoint"`
	Command     []string             `yaml:"command"`
	Environment map[string]Value     `yaml:"environment"`
	Settings    map[string]Parameter `yaml:"settings"`
	When        Conditions           `yaml:"when"`
	DependsOn   []string             `yaml:"depends_on"`
	// Failure is "ignore" when the step's failure must not fail the stage; empty or "fail"
	// otherwise.
	Failure    string        `yaml:"failure"`
	Detach     bool          `yaml:"detach"`
	Privileged bool          `yaml:"privileged"`
	Volumes    []VolumeMount `yaml:"volumes"`
}

// Value is an environment value: a literal, or the name of a secret to read it from.
type Value struct {
	Literal    string
	FromSecret string
}

// UnmarshalYAML takes a scalar (numbers and booleans as written) or {from_secret: name}.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*v = Value{}
			return nil
		}
		*v = Value{Literal: n.Value}
		return nil
	case yaml.MappingNode:
		var m struct {
			FromSecret string `yaml:"from_secret"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		if m.FromSecret == "" {
			return fmt.Errorf("line %d: an environment value is a string or {from_secret: name}", n.Line)
		}
		*v = Value{FromSecret: m.FromSecret}
		return nil
	default:
		return fmt.Errorf("line %d: an environment value is a string or {from_secret: name}", n.Line)
	}
}

// Parameter is a plugin setting: any YAML value, or the name of a secret to read it from.
type Parameter struct {
	// Value is the decoded YAML value (string, int, float64, bool, []any, map[string]any, nil).
	Value      any
	FromSecret string
}

// UnmarshalYAML takes any value; a mapping with only from_secret names a secret.
func (p *Parameter) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "from_secret" {
		var name string
		if err := n.Content[1].Decode(&name); err != nil || name == "" {
			return fmt.Errorf("line %d: from_secret takes a secret name", n.Line)
		}
		*p = Parameter{FromSecret: name}
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	*p = Parameter{Value: v}
	return nil
}

// Conditions are a step's `when`: every condition set must match for the step to run. Branch
// matches the build's target branch, Event its event, Ref its git ref, Target the environment
// it deploys to, Instance the server's host, Action the build's action, Cron the name of the
// cron job that started it, Repo the repository's slug; Status the stage's status so far
// (success or failure).
type Conditions struct {
	Branch   Condition `yaml:"branch"`
	Event    Condition `yaml:"event"`
	Ref      Condition `yaml:"ref"`
	Status   Condition `yaml:"status"`
	Target   Condition `yaml:"target"`
	Instance Condition `yaml:"instance"`
	Action   Condition `yaml:"action"`
	Cron     Condition `yaml:"cron"`
	Repo     Condition `yaml:"repo"`
}

// Condition is a list of glob patterns (path.Match syntax) to include and to exclude. An empty
// condition matches everything.
type Condition struct {
	Include []string
	Exclude []string
}

// UnmarshalYAML takes a string, a list, or {include: ..., exclude: ...} where each is a string or
// a list.
func (c *Condition) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode, yaml.SequenceNode:
		list, err := stringList(n)
		if err != nil {
			return err
		}
		*c = Condition{Include: list}
		return nil
	case yaml.MappingNode:
		var out Condition
		for i := 0; i+1 < len(n.Content); i += 2 {
			list, err := stringList(n.Content[i+1])
			if err != nil {
				return err
			}
			switch key := n.Content[i].Value; key {
			case "include":
				out.Include = list
			case "exclude":
				out.Exclude = list
			default:
				return fmt.Errorf("line %d: a condition has include and exclude, not %q", n.Content[i].Line, key)
			}
		}
		*c = out
		return nil
	default:
		return fmt.Errorf("line %d: a condition is a string, a list or {include, exclude}", n.Line)
	}
}

func stringList(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: expected a string", item.Line)
			}
			out = append(out, item.Value)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("line %d: expected a string or a list of strings", n.Line)
	}
}

// IsEmpty reports whether the condition has no patterns.
func (c Condition) IsEmpty() bool { return len(c.Include) == 0 && len(c.Exclude) == 0 }

// Match reports whether v passes the condition: it matches an include pattern (or there are
// none) and no exclude pattern. Patterns use path.Match; a malformed pattern matches nothing
// (Parse refuses them).
func (c Condition) Match(v string) bool {
	if len(c.Include) > 0 && !slices.ContainsFunc(c.Include, func(p string) bool { return glob(p, v) }) {
		return false
	}
	return !slices.ContainsFunc(c.Exclude, func(p string) bool { return glob(p, v) })
}

func glob(pattern, v string) bool {
	ok, err := path.Match(pattern, v)
	return err == nil && ok
}

// header is the part of every document that says what it is.
type header struct {
	Kind string `yaml:"kind"`
}

// Parse reads a Drone YAML file of one or more documents and returns its pipelines, checked
// (Check). Errors match ErrSyntax or ErrInvalid and name the document.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	f := &File{}
	for doc := 1; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		if n.Kind == 0 || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) {
			continue
		}
		var h header
		if err := n.Decode(&h); err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		if h.Kind != "pipeline" {
			continue
		}
		p := &Pipeline{}
		if err := n.Decode(p); err != nil {
			return nil, fmt.Errorf("%w: document %d: %w", ErrSyntax, doc, err)
		}
		if p.Type == "" {
			p.Type = TypeDocker
		}
		if p.Name == "" {
			p.Name = "default"
		}
		if err := p.Check(); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		f.Pipelines = append(f.Pipelines, p)
	}
	names := map[string]bool{}
	for _, p := range f.Pipelines {
		if names[p.Name] {
			return nil, fmt.Errorf("%w: two pipelines are named %q", ErrInvalid, p.Name)
		}
		names[p.Name] = true
	}
	return f, nil
}

// Pipeline returns the pipeline named name, or an error matching ErrNoPipeline that lists the
// names there are.
func (f *File) Pipeline(name string) (*Pipeline, error) {
	var names []string
	for _, p := range f.Pipelines {
		if p.Name == name {
			return p, nil
		}
		names = append(names, fmt.Sprintf("%q", p.Name))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: the file has no pipeline, looking for %q", ErrNoPipeline, name)
	}
	return nil, fmt.Errorf("%w: %q is not among %s", ErrNoPipeline, name, strings.Join(names, ", "))
}

// ParseStage parses data and returns the pipeline named stage: what a runner does with the
// YAML of a stage's details.
func ParseStage(data []byte, stage string) (*Pipeline, error) {
	f, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return f.Pipeline(stage)
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check reports the first reason the pipeline cannot run, as an error matching ErrInvalid: a
// type other than exec or docker, a workspace path that climbs out with .. or is the root, a
// negative clone depth, a step named clone while the clone step is on, a step without a name or with a name used twice, a docker step
// without an image, an unknown failure mode or pull policy, an environment name that is not one,
// a malformed glob in a condition, a status other than success or failure, a depends_on naming
// no step, or a depends_on cycle.
func (p *Pipeline) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: pipeline %q: %s", ErrInvalid, p.Name, fmt.Sprintf(format, args...))
	}
	if p.Type != TypeExec && p.Type != TypeDocker {
		return bad("type %q is not supported: this runner runs exec and docker pipelines", p.Type)
	}
	if len(p.Steps) == 0 {
		return bad("it has no steps")
	}
	if err := checkEnv(p.Environment); err != nil {
		return bad("environment: %v", err)
	}
	if ws := p.Workspace.Path; slices.Contains(strings.Split(ws, "/"), "..") || (path.IsAbs(ws) && path.Clean(ws) == "/") {
		return bad("workspace.path %q must name a directory below the workspace base, or an absolute one other than the root", ws)
	}
	if p.Clone.Depth < 0 {
		return bad("clone.depth is %d; it is 0 for the whole history, or the number of commits to fetch", p.Clone.Depth)
	}
	steps := map[string]*Step{}
	for i, s := range p.Steps {
		if s == nil {
			return bad("step %d is empty", i+1)
		}
		if s.Name == "" {
			return bad("step %d has no name", i+1)
		}
		if steps[s.Name] != nil {
			return bad("two steps are named %q", s.Name)
		}
		if s.Name == CloneStep && !p.Clone.Disable {
			return bad("a step is named %q, the name of the clone step the runner adds; rename it, or disable the clone with clone: {disable: true}", s.Name)
		}
		steps[s.Name] = s
		if err := s.check(p.Type); err != nil {
			return bad("step %q: %v", s.Name, err)
		}
	}
	for _, s := range p.Steps {
		for _, d := range s.DependsOn {
			if steps[d] == nil && (d != CloneStep || p.Clone.Disable) {
				return bad("step %q depends on %q, which is not a step of the pipeline", s.Name, d)
			}
		}
	}
	if cycle := findCycle(p.Steps); cycle != nil {
		return bad("depends_on has a cycle: %s", strings.Join(cycle, " -> "))
	}
	return nil
}

func (s *Step) check(typ string) error {
	if typ == TypeDocker && s.Image == "" {
		return errors.New("a docker step needs an image")
	}
	switch s.Failure {
	case "", "fail", "ignore":
	default:
		return fmt.Errorf("failure is %q; it can be ignore or fail", s.Failure)
	}
	switch s.Pull {
	case "", "always", "never", "if-not-exists", "default":
	default:
		return fmt.Errorf("pull is %q; it can be always, never or if-not-exists", s.Pull)
	}
	if err := checkEnv(s.Environment); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	for name, c := range map[string]Condition{
		"branch": s.When.Branch, "event": s.When.Event, "ref": s.When.Ref,
		"status": s.When.Status, "target": s.When.Target, "instance": s.When.Instance,
		"action": s.When.Action, "cron": s.When.Cron, "repo": s.When.Repo,
	} {
		for _, pat := range slices.Concat(c.Include, c.Exclude) {
			if _, err := path.Match(pat, ""); err != nil {
				return fmt.Errorf("when.%s: pattern %q: %w", name, pat, err)
			}
		}
	}
	for _, st := range slices.Concat(s.When.Status.Include, s.When.Status.Exclude) {
		if st != "success" && st != "failure" {
			return fmt.Errorf("when.status is %q; it can be success or failure", st)
		}
	}
	for _, v := range s.Volumes {
		if v.Name == "" || v.Path == "" {
			return errors.New("a volume mount needs a name and a path")
		}
	}
	for k := range s.Settings {
		if k == "" {
			return errors.New("a setting has an empty name")
		}
	}
	return nil
}

func checkEnv(env map[string]Value) error {
	for k := range env {
		if !envName.MatchString(k) {
			return fmt.Errorf("%q is not a variable name", k)
		}
	}
	return nil
}

// findCycle returns the names along a depends_on cycle, the first name repeated at the end, or
// nil when there is none.
func findCycle(steps []*Step) []string {
	deps := map[string][]string{}
	for _, s := range steps {
		deps[s.Name] = s.DependsOn
	}
	const (
		unseen = iota
		active
		finished
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		state[n] = active
		stack = append(stack, n)
		for _, d := range deps[n] {
			switch state[d] {
			case active:
				i := slices.Index(stack, d)
				return append(slices.Clone(stack[i:]), d)
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = finished
		return nil
	}
	for _, s := range steps {
		if state[s.Name] == unseen {
			if c := visit(s.Name); c != nil {
				return c
			}
		}
	}
	return nil
}
