package ci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// errUnsupportedKind marks a step kind this runner cannot run; the step fails at once.
var errUnsupportedKind = errors.New("not supported by this runner")

// logKindHarness selects the Harness log service transport for a stage's logs.
const logKindHarness = "harness"

// dataTIConfig is the stage data key that carries the test-intelligence config untouched.
const dataTIConfig = "ti_config"

// workspaceVolume is the name of the stage volume the manager makes the workspace of. The engine
// gives every stage a workspace of its own (mounted at /harness in containers), so this volume is
// not created: the stage's workspace takes its place.
const workspaceVolume = "harness"

// stageSpec translates a setup request (lite-engine's SetupRequest) into an engine stage.
func stageSpec(id, logKey string, sr citasks.SetupRequest, services []citasks.ExecuteVMRequest) (engine.StageSpec, error) {
	if strings.TrimSpace(id) == "" {
		return engine.StageSpec{}, fmt.Errorf("%w: the stage runtime id (id) is missing", engine.ErrInvalid)
	}
	spec := engine.StageSpec{
		ID:                id,
		LogKey:            logKey,
		Network:           engine.Network{ID: sr.Network.Id, Labels: sr.Network.Labels, Options: sr.Network.Options},
		Env:               sr.Envs,
		Secrets:           sr.Secrets,
		MountDockerSocket: sr.MountDockerSocket,
	}
	for i, v := range sr.Volumes {
		vol, err := volume(i, v.Temp, v.Host)
		if err != nil {
			return engine.StageSpec{}, err
		}
		if vol.Host != nil && vol.Name == workspaceVolume {
			continue
		}
		spec.Volumes = append(spec.Volumes, vol)
	}
	spec.Files = files(sr.Files)
	logs, err := logConfig(sr.LogConfig)
	if err != nil {
		return engine.StageSpec{}, err
	}
	spec.Logs = logs
	if isSet(sr.TiConfig) {
		spec.Data = map[string]json.RawMessage{dataTIConfig: bytes.Clone(sr.TiConfig)}
	}
	for i, svc := range services {
		step, err := stepSpec(svc.StartStepRequest)
		if err != nil {
			return engine.StageSpec{}, fmt.Errorf("service %d: %w", i, err)
		}
		step.Detach = true
		spec.Services = append(spec.Services, step)
	}
	return spec, nil
}

// dockerSetup translates the camelCase setup of a CI_DOCKER_INITIALIZE_TASK into the snake_case
// one; the field names follow CIDockerInitializeTaskRequest and are inferred.
func dockerSetup(c citasks.DockerSetupConfig) (citasks.SetupRequest, error) {
	sr := citasks.SetupRequest{
		Envs:              c.Envs,
		Secrets:           c.Secrets,
		Network:           c.Network,
		Files:             c.Files,
		TiConfig:          c.TiConfig,
		MountDockerSocket: c.MountDockerSocket,
	}
	for i, v := range c.Volumes {
		host := v.Host
		if v.HostVolume != nil {
			if host != nil {
				return citasks.SetupRequest{}, fmt.Errorf("%w: volume %d has both host and hostVolume", engine.ErrInvalid, i)
			}
			host = &citasks.HostVolume{Id: v.HostVolume.Id, Name: v.HostVolume.Name, Path: v.HostVolume.Path}
		}
		sr.Volumes = append(sr.Volumes, citasks.Volume{Host: host, Temp: v.Temp})
	}
	if lc := c.LogConfig; lc != (citasks.DockerLogConfig{}) {
		raw, err := json.Marshal(map[string]any{
			"url": lc.Url, "token": lc.Token, "account_id": lc.AccountID, "indirect_upload": lc.IndirectUpload,
		})
		if err != nil {
			return citasks.SetupRequest{}, fmt.Errorf("encode the log config: %w", err)
		}
		sr.LogConfig = raw
	}
	return sr, nil
}

// volume translates one stage volume, which must be exactly one of temp and host.
func volume(i int, temp *citasks.TempVolume, host *citasks.HostVolume) (engine.Volume, error) {
	switch {
	case temp != nil && host == nil:
		return engine.Volume{Name: temp.Name, ID: temp.Id, Temp: &engine.TempVolume{
			Medium: temp.Medium, SizeLimit: temp.SizeLimit, Labels: temp.Labels}}, nil
	case host != nil && temp == nil:
		return engine.Volume{Name: host.Name, ID: host.Id, Host: &engine.HostVolume{
			Path: host.Path, Create: host.Create, Remove: host.Remove, ReadOnly: host.ReadOnly, Labels: host.Labels}}, nil
	default:
		return engine.Volume{}, fmt.Errorf("%w: volume %d needs exactly one of temp and host", engine.ErrInvalid, i)
	}
}

func files(in []citasks.File) []engine.File {
	var out []engine.File
	for _, f := range in {
		out = append(out, engine.File{Path: f.Path, Mode: f.Mode, Data: f.Data, IsDir: f.IsDir})
	}
	return out
}

// logConfig keeps the wire's log_config as the settings of the Harness log transport. A config
// without a URL means no live logs.
func logConfig(raw json.RawMessage) (logstream.Config, error) {
	if !isSet(raw) {
		return logstream.Config{}, nil
	}
	var lc struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(raw, &lc); err != nil {
		return logstream.Config{}, fmt.Errorf("%w: log_config: %w", engine.ErrInvalid, err)
	}
	if strings.TrimSpace(lc.URL) == "" {
		return logstream.Config{}, nil
	}
	return logstream.Config{Kind: logKindHarness, Settings: bytes.Clone(raw)}, nil
}

// stepSpec translates lite-engine's StartStepRequest into an engine step.
func stepSpec(s citasks.StartStepRequest) (engine.StepSpec, error) {
	switch s.Kind {
	case "", "Run":
	case "RunTest", "RunTestsV2":
		return engine.StepSpec{}, fmt.Errorf("step kind %s is %w", s.Kind, errUnsupportedKind)
	default:
		return engine.StepSpec{}, fmt.Errorf("%w: unknown step kind %q (want Run, RunTest or RunTestsV2)", engine.ErrInvalid, s.Kind)
	}
	pull, err := pullPolicy(s.Pull)
	if err != nil {
		return engine.StepSpec{}, err
	}
	step := engine.StepSpec{
		ID:                s.Id,
		Name:              s.Name,
		LogKey:            s.LogKey,
		Image:             s.Image,
		Pull:              pull,
		Entrypoint:        s.Run.Entrypoint,
		Commands:          s.Run.Commands,
		Env:               s.Environment,
		Secrets:           s.Secrets,
		WorkingDir:        s.WorkingDir,
		Files:             files(s.Files),
		OutputVars:        s.OutputVars,
		Timeout:           time.Duration(s.Timeout) * time.Second,
		Detach:            s.Detach,
		Privileged:        s.Privileged,
		User:              s.User,
		PortBindings:      s.PortBindings,
		NetworkAliases:    s.NetworkAliases,
		MountDockerSocket: s.MountDockerSocket,
		Labels:            s.Labels,
	}
	if s.Auth != (citasks.RegistryAuth{}) {
		step.Auth = &engine.RegistryAuth{Address: s.Auth.Address, Username: s.Auth.Username, Password: s.Auth.Password}
	}
	for _, m := range s.Volumes {
		if m.Name == workspaceVolume {
			// The workspace is mounted into every container step already.
			continue
		}
		step.Volumes = append(step.Volumes, engine.VolumeMount{Name: m.Name, Path: m.Path})
	}
	for _, o := range s.Outputs {
		typ := engine.OutputString
		if o.Type == citasks.OutputTypeSECRET {
			typ = engine.OutputSecret
		}
		step.Outputs = append(step.Outputs, engine.OutputSpec{Key: o.Key, Value: o.Value, Type: typ})
	}
	return step, nil
}

// pullPolicy maps lite-engine's pull values; they are matched without regard to case.
func pullPolicy(p string) (engine.PullPolicy, error) {
	switch strings.ToLower(p) {
	case "", "default":
		return engine.PullDefault, nil
	case "always":
		return engine.PullAlways, nil
	case "ifnotpresent", "if-not-present":
		return engine.PullIfNotPresent, nil
	case "never":
		return engine.PullNever, nil
	default:
		return "", fmt.Errorf("%w: unknown pull policy %q (want Always, IfNotPresent or Never)", engine.ErrInvalid, p)
	}
}

// isSet reports whether a raw JSON value is present and not null.
func isSet(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && string(t) != "null"
}
