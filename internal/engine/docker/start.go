package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/go-connections/nat"

	"github.com/dlite-dev/dlite/internal/engine"
)

// Start runs a container step: it refuses what the runner's policy forbids, pulls the image as the
// step's pull policy says, creates the container on the stage network with the stage's mounts,
// starts it and streams its output into r.Output.
//
// The container is named by the stage and step ids, so a step that already has one is joined
// instead of started twice: a running container is followed from now on, a container that has
// exited answers its exit code from Wait, and one that was created but never started is started.
func (b *Backend) Start(ctx context.Context, r engine.Run) (engine.Process, error) {
	if r.Stage == nil || r.Step == nil {
		return nil, fmt.Errorf("docker: start: no stage or step: %w", engine.ErrInvalid)
	}
	step, st := r.Step, r.Stage
	if step.ID == "" {
		return nil, fmt.Errorf("docker: start: step has no id: %w", engine.ErrInvalid)
	}
	if step.Image == "" {
		return nil, fmt.Errorf("docker: start step %s: no image: %w", step.ID, engine.ErrInvalid)
	}
	out := r.Output
	if out == nil {
		out = io.Discard
	}
	name := ContainerName(st.Spec.ID, step.ID)

	if p, err := b.join(ctx, st.Spec.ID, step.ID, name, out); p != nil || err != nil {
		return p, err
	}

	cfg, hostCfg, netCfg, err := b.containerConfig(r)
	if err != nil {
		return nil, err
	}
	if err := b.ensureImage(ctx, step); err != nil {
		return nil, err
	}
	if err := b.ensureMountedVolumes(ctx, st, hostCfg.Mounts); err != nil {
		return nil, err
	}
	// The create is not cut short by ctx: a daemon that got the request may create the container
	// after the caller gave up on it, and after the stage's cleanup looked for it. It is bounded,
	// and a container created for a start cancelled meanwhile is removed at once.
	createCtx, cancelCreate := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	created, err := b.cli.ContainerCreate(createCtx, cfg, hostCfg, netCfg, nil, name)
	cancelCreate()
	if err == nil && ctx.Err() != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := b.cli.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			b.log.Warn("could not remove the container of a cancelled start", "container", name, "error", rerr)
		}
		return nil, fmt.Errorf("docker: start step %s: %w", step.ID, context.Cause(ctx))
	}
	if err != nil {
		if cerrdefs.IsConflict(err) {
			// A concurrent start of the same step won the name: join its container.
			if p, jerr := b.join(ctx, st.Spec.ID, step.ID, name, out); p != nil || jerr != nil {
				return p, jerr
			}
		}
		return nil, fmt.Errorf("docker: create container for step %s: %w", step.ID, err)
	}
	return b.startCreated(ctx, step.ID, created.ID, name, out)
}

// createTimeout bounds the creation of a step's container.
const createTimeout = 2 * time.Minute

// startCreated starts a created container and follows its whole output. A container that cannot
// start (its command does not exist, say) is removed, so the step can be tried again.
func (b *Backend) startCreated(ctx context.Context, stepID, id, name string, out io.Writer) (engine.Process, error) {
	if err := b.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := b.cli.ContainerRemove(rmCtx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			b.log.Warn("could not remove a container that failed to start", "container", name, "error", rerr)
		}
		return nil, fmt.Errorf("docker: start container for step %s: %w", stepID, err)
	}
	b.log.Debug("started step container", "step", stepID, "container", name)
	return b.follow(ctx, id, name, time.Time{}, out)
}

// join returns a process for the step's existing container, or nil when it has none.
func (b *Backend) join(ctx context.Context, stageID, stepID, name string, out io.Writer) (engine.Process, error) {
	c, err := b.cli.ContainerInspect(ctx, name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("docker: inspect container %s of step %s: %w", name, stepID, err)
	}
	labels := map[string]string(nil)
	if c.Config != nil {
		labels = c.Config.Labels
	}
	if err := checkOwner("container", name, stageID, labels); err != nil {
		return nil, fmt.Errorf("docker: start step %s: %w", stepID, err)
	}
	state := ""
	if c.State != nil {
		state = string(c.State.Status)
	}
	switch state {
	case container.StateCreated:
		b.log.Debug("starting a step container created earlier", "step", stepID, "container", name)
		return b.startCreated(ctx, stepID, c.ID, name, out)
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		b.log.Debug("joining a running step container", "step", stepID, "container", name)
		return b.follow(ctx, c.ID, name, time.Now(), out)
	default:
		// Exited, dead or being removed: nothing more to show; Wait answers how it ended.
		return &process{b: b, id: c.ID, name: name}, nil
	}
}

// containerConfig builds the container of a step, refusing what the runner does not allow.
func (b *Backend) containerConfig(r engine.Run) (*container.Config, *container.HostConfig, *network.NetworkingConfig, error) {
	step, st := r.Step, r.Stage
	if step.Privileged && !b.opts.AllowPrivileged {
		return nil, nil, nil, fmt.Errorf("docker: step %s asks to run privileged, which the runner does not allow (enable AllowPrivileged): %w", step.ID, engine.ErrNotAllowed)
	}
	socket, err := b.wantsSocket(st, step)
	if err != nil {
		return nil, nil, nil, err
	}
	if st.Workspace == "" || st.Shared == "" {
		return nil, nil, nil, fmt.Errorf("docker: start step %s: stage %s has no workspace or shared directory: %w", step.ID, st.Spec.ID, engine.ErrInvalid)
	}
	paths := b.Paths(st)
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: st.Workspace, Target: paths.Workspace},
		{Type: mount.TypeBind, Source: st.Shared, Target: paths.Shared},
	}
	if socket {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: b.socket, Target: SocketPath})
	}
	for _, vm := range step.Volumes {
		m, err := stageMount(st, vm)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("docker: start step %s: %w", step.ID, err)
		}
		if slices.ContainsFunc(mounts, func(o mount.Mount) bool { return o.Target == m.Target }) {
			// The workspace and shared directory are already there; the stage's own mounts win.
			b.log.Debug("skipping a volume mount over a stage directory", "step", step.ID, "volume", vm.Name, "path", vm.Path)
			continue
		}
		mounts = append(mounts, m)
	}
	exposed, bindings, err := portBindings(step.PortBindings)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("docker: start step %s: %w", step.ID, err)
	}

	workDir := r.WorkingDir
	if workDir == "" {
		workDir = paths.Workspace
	}
	cfg := &container.Config{
		Image:        step.Image,
		Env:          envList(r.Env),
		WorkingDir:   workDir,
		User:         step.User,
		Labels:       b.labels(st.Spec.ID, step.Labels, map[string]string{engine.LabelStep: step.ID}),
		ExposedPorts: exposed,
	}
	if len(step.Entrypoint) > 0 {
		cfg.Entrypoint = slices.Clone(step.Entrypoint)
	}
	if len(step.Commands) > 0 {
		cfg.Cmd = []string{step.Commands[0]}
	}
	netName := NetworkName(st)
	hostCfg := &container.HostConfig{
		NetworkMode:  container.NetworkMode(netName),
		Mounts:       mounts,
		Privileged:   step.Privileged,
		PortBindings: bindings,
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		netName: {Aliases: aliases(step)},
	}}
	return cfg, hostCfg, netCfg, nil
}

// ensureMountedVolumes makes sure the stage's temp volumes a step mounts exist with the stage's
// labels: the daemon would otherwise create a missing one unlabelled, and cleanup would miss it.
func (b *Backend) ensureMountedVolumes(ctx context.Context, st *engine.Stage, mounts []mount.Mount) error {
	for _, v := range st.Spec.Volumes {
		if v.Temp == nil {
			continue
		}
		name := VolumeName(st.Spec.ID, v)
		if slices.ContainsFunc(mounts, func(m mount.Mount) bool { return m.Type == mount.TypeVolume && m.Source == name }) {
			if err := b.ensureVolume(ctx, st.Spec.ID, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// wantsSocket decides whether a step gets the Docker socket: the step's choice, else the stage's,
// else the runner's (AllowDockerSocket). An explicit ask the runner does not allow is refused.
func (b *Backend) wantsSocket(st *engine.Stage, step *engine.StepSpec) (bool, error) {
	ask := step.MountDockerSocket
	if ask == nil {
		ask = st.Spec.MountDockerSocket
	}
	if ask == nil {
		return b.opts.AllowDockerSocket, nil
	}
	if *ask && !b.opts.AllowDockerSocket {
		return false, fmt.Errorf("docker: step %s asks for the Docker socket, which the runner does not allow (enable AllowDockerSocket): %w", step.ID, engine.ErrNotAllowed)
	}
	return *ask, nil
}

// stageMount mounts one of the stage's volumes into a step.
func stageMount(st *engine.Stage, vm engine.VolumeMount) (mount.Mount, error) {
	if !path.IsAbs(vm.Path) {
		return mount.Mount{}, fmt.Errorf("volume %q: mount path %q is not absolute: %w", vm.Name, vm.Path, engine.ErrInvalid)
	}
	for _, v := range st.Spec.Volumes {
		if v.Name != vm.Name {
			continue
		}
		switch {
		case v.Temp != nil:
			return mount.Mount{Type: mount.TypeVolume, Source: VolumeName(st.Spec.ID, v), Target: vm.Path}, nil
		case v.Host != nil:
			return mount.Mount{Type: mount.TypeBind, Source: v.Host.Path, Target: vm.Path, ReadOnly: v.Host.ReadOnly}, nil
		default:
			return mount.Mount{}, fmt.Errorf("volume %q is neither temp nor host: %w", vm.Name, engine.ErrInvalid)
		}
	}
	return mount.Mount{}, fmt.Errorf("volume %q is not a volume of stage %s: %w", vm.Name, st.Spec.ID, engine.ErrInvalid)
}

// portBindings reads a step's host-to-container port map ("8080" or "127.0.0.1:8080" to "80" or
// "53/udp").
func portBindings(ports map[string]string) (nat.PortSet, nat.PortMap, error) {
	if len(ports) == 0 {
		return nil, nil, nil
	}
	exposed := nat.PortSet{}
	bindings := nat.PortMap{}
	for host, ctr := range ports {
		proto, port := nat.SplitProtoPort(ctr)
		p, err := nat.NewPort(proto, port)
		if err != nil {
			return nil, nil, fmt.Errorf("port binding %s:%s: %w: %w", host, ctr, err, engine.ErrInvalid)
		}
		hostIP, hostPort := "", host
		if ip, hp, err := net.SplitHostPort(host); err == nil {
			hostIP, hostPort = ip, hp
		}
		if _, err := nat.ParsePort(hostPort); err != nil {
			return nil, nil, fmt.Errorf("port binding %s:%s: host port: %w: %w", host, ctr, err, engine.ErrInvalid)
		}
		exposed[p] = struct{}{}
		bindings[p] = append(bindings[p], nat.PortBinding{HostIP: hostIP, HostPort: hostPort})
	}
	return exposed, bindings, nil
}

// aliases are the names other containers of the stage reach a step by: its name, its id and its
// network aliases, made valid host names, each once.
func aliases(step *engine.StepSpec) []string {
	var out []string
	for _, a := range append([]string{step.Name, step.ID}, step.NetworkAliases...) {
		a = hostName(a)
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// hostName keeps the characters a DNS label allows, turning the others into hyphens.
func hostName(s string) string {
	b := []byte(strings.TrimSpace(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-.")
}

// envList is the container's environment, sorted so the same step makes the same container.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ensureImage makes the step's image present as its pull policy says: always pulled; by default
// and with if-not-present pulled only when missing; with never, a missing image is an error.
func (b *Backend) ensureImage(ctx context.Context, step *engine.StepSpec) error {
	policy, err := pullPolicy(step.Pull)
	if err != nil {
		return fmt.Errorf("docker: step %s: %w", step.ID, err)
	}
	if policy != engine.PullAlways {
		_, err := b.cli.ImageInspect(ctx, step.Image)
		switch {
		case err == nil:
			return nil
		case !cerrdefs.IsNotFound(err):
			return fmt.Errorf("docker: inspect image %q of step %s: %w", step.Image, step.ID, err)
		case policy == engine.PullNever:
			return fmt.Errorf("docker: image %q of step %s is not present and its pull policy is never", step.Image, step.ID)
		}
	}
	return b.pull(ctx, step)
}

// pullPolicy reads the policy in the spellings front-ends send (always, Always, if-not-present,
// IfNotPresent, never, default, "").
func pullPolicy(p engine.PullPolicy) (engine.PullPolicy, error) {
	switch strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(string(p))) {
	case "", "default":
		return engine.PullDefault, nil
	case "always":
		return engine.PullAlways, nil
	case "ifnotpresent":
		return engine.PullIfNotPresent, nil
	case "never":
		return engine.PullNever, nil
	}
	return "", fmt.Errorf("unknown pull policy %q (want always, if-not-present or never): %w", p, engine.ErrInvalid)
}

// pull pulls the step's image with its registry credentials, reading the daemon's progress stream
// to its end: a pull fails inside the stream, after the daemon has answered 200.
func (b *Backend) pull(ctx context.Context, step *engine.StepSpec) error {
	auth, err := registryAuth(step.Auth)
	if err != nil {
		return fmt.Errorf("docker: pull image %q of step %s: %w", step.Image, step.ID, err)
	}
	b.log.Debug("pulling image", "step", step.ID, "image", step.Image)
	rc, err := b.cli.ImagePull(ctx, step.Image, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("docker: pull image %q of step %s: %w", step.Image, step.ID, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("docker: pull image %q of step %s: read progress: %w", step.Image, step.ID, err)
		}
		if msg.Error != nil {
			return fmt.Errorf("docker: pull image %q of step %s: %w", step.Image, step.ID, msg.Error)
		}
	}
}

// registryAuth is the X-Registry-Auth value of a step's credentials, or "" without any.
func registryAuth(a *engine.RegistryAuth) (string, error) {
	if a == nil || a.Username == "" && a.Password == "" {
		return "", nil
	}
	v, err := registry.EncodeAuthConfig(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: a.Address})
	if err != nil {
		return "", fmt.Errorf("encode registry credentials: %w", err)
	}
	return v, nil
}
