package drone

import (
	"fmt"
	"maps"
	"strings"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

func logstreamConfig() logstream.Config { return logstream.Config{Kind: LogKind} }

// stageVolumes translates a docker pipeline's volumes: temp volumes live as long as the stage;
// host volumes, which give steps the runner's host, only for a trusted repository, as Drone
// runners allow them.
func stageVolumes(p *pipeline.Pipeline, trusted bool) ([]engine.Volume, error) {
	if p.Type != pipeline.TypeDocker {
		return nil, nil
	}
	var out []engine.Volume
	for _, v := range p.Volumes {
		switch {
		case v.Host != nil:
			if !trusted {
				return nil, fmt.Errorf("volume %q is a host volume, which only a trusted repository may use", v.Name)
			}
			out = append(out, engine.Volume{Name: v.Name, Host: &engine.HostVolume{Path: v.Host.Path}})
		default:
			medium := ""
			if v.Temp != nil {
				medium = v.Temp.Medium
			}
			out = append(out, engine.Volume{Name: v.Name, Temp: &engine.TempVolume{Medium: medium}})
		}
	}
	return out, nil
}

// stepSpec translates a step about to start into an engine step: commands as one shell script
// that echoes each command before it runs it and stops at the first that fails, as Drone runners
// do; in a container for docker pipelines (a plugin without commands runs its image's own
// entrypoint), on the host for exec ones.
func (r *stageRun) stepSpec(st pipeline.Start) engine.StepSpec {
	ps := st.Step
	env := maps.Clone(st.Env)
	spec := engine.StepSpec{
		ID:     fmt.Sprintf("step%d", ps.Number),
		Name:   ps.Name,
		Env:    env,
		Detach: ps.Detach,
	}
	spec.LogKey = logKey(r.stage.Id, ps.Number)
	if ps.Clone != nil {
		return r.cloneStepSpec(spec, ps.Clone)
	}
	script := []string(nil)
	if len(ps.Step.Commands) > 0 {
		script = []string{shellScript(ps.Step.Commands)}
	}
	if r.plan.Pipeline.Type == pipeline.TypeDocker {
		spec.Image, spec.Privileged = ps.Image, ps.Step.Privileged
		spec.Pull = pullPolicy(ps.Step.Pull)
		for _, m := range ps.Step.Volumes {
			spec.Volumes = append(spec.Volumes, engine.VolumeMount{Name: m.Name, Path: m.Path})
		}
		if script != nil {
			spec.Entrypoint, spec.Commands = []string{"/bin/sh", "-c"}, script
		} else {
			spec.Entrypoint, spec.Commands = ps.Step.Entrypoint, ps.Step.Command
		}
		return spec
	}
	spec.Entrypoint, spec.Commands = []string{"/bin/sh", "-c"}, script
	return spec
}

// shellScript is commands as one script: each echoed with "+ " first, the first failure ends it.
func shellScript(commands []string) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "echo %s\n%s\n", shellQuote("+ "+c), c)
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func pullPolicy(p string) engine.PullPolicy {
	switch p {
	case "always":
		return engine.PullAlways
	case "never":
		return engine.PullNever
	case "if-not-exists", "if-not-present":
		return engine.PullIfNotPresent
	default:
		return engine.PullDefault
	}
}
