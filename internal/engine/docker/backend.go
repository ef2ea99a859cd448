package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/dlite-dev/dlite/internal/engine"
)

// Where container steps see the stage's directories, and where the Docker socket is mounted.
const (
	// WorkspacePath is the mount point of the stage workspace in every container step of a stage
	// that does not choose its own (engine.StageSpec.WorkspacePath).
	WorkspacePath = engine.ContainerWorkspace
	// SharedPath is the mount point of the stage's shared directory (output, export and artifact
	// files) in every container step.
	SharedPath = "/tmp/engine"
	// SocketPath is where a step that may use the Docker socket finds it.
	SocketPath = "/var/run/docker.sock"
)

// pingTimeout bounds New's first call to the daemon when the caller's context has no deadline.
const pingTimeout = 15 * time.Second

// Options configure the Docker backend.
type Options struct {
	// RunnerID labels every object the backend creates (engine.LabelRunner).
	RunnerID string
	// AllowPrivileged lets steps that ask for it run privileged. Off by default: a privileged
	// container controls the runner's host and every build on it.
	AllowPrivileged bool
	// AllowDockerSocket lets steps mount the Docker socket, and mounts it into steps that leave
	// the choice to the runner. Off by default: the socket gives a build the host's Docker, and
	// with it the host and every other build's containers.
	AllowDockerSocket bool
	// Logger receives the backend's own log; nil discards it.
	Logger *slog.Logger
}

// Backend runs container steps through the Docker Engine API. It implements engine.Backend; it
// keeps no state of its own between calls beyond its client, so every call may come from a
// process other than the one that set the stage up.
type Backend struct {
	cli    *client.Client
	opts   Options
	log    *slog.Logger
	socket string
}

var _ engine.Backend = (*Backend)(nil)

// New connects to the Docker daemon named by the environment (DOCKER_HOST etc., the local socket
// by default) and pings it. It returns an error that says where it looked when no daemon answers.
func New(ctx context.Context, opts Options) (*Backend, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: client from the environment: %w", err)
	}
	pingCtx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		pingCtx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	ping, err := cli.Ping(pingCtx)
	if err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("docker: no daemon answers at %s (start dockerd, or set DOCKER_HOST): %w", cli.DaemonHost(), err)
	}
	b := &Backend{cli: cli, opts: opts, log: log.With("backend", "docker"), socket: socketSource(cli.DaemonHost())}
	b.log.Debug("docker daemon answered", "host", cli.DaemonHost(), "api", ping.APIVersion, "client_api", cli.ClientVersion())
	return b, nil
}

// socketSource is the host path of the daemon's socket, mounted into steps that may use it: the
// socket the client talks to when that is a local one, the default socket otherwise.
func socketSource(host string) string {
	u, err := url.Parse(host)
	if err == nil && u.Scheme == "unix" && u.Path != "" {
		return u.Path
	}
	return SocketPath
}

// Close releases the backend's connections to the daemon.
func (b *Backend) Close() error {
	return b.cli.Close()
}

// Name is "docker"; step records carry it.
func (b *Backend) Name() string { return "docker" }

// Paths says where container steps see the stage workspace and shared directory, whatever their
// host directories are: the stage's workspace path (WorkspacePath unless the stage chose one) and
// SharedPath.
func (b *Backend) Paths(st *engine.Stage) engine.StepPaths {
	return engine.StepPaths{Workspace: st.Spec.ContainerWorkspacePath(), Shared: SharedPath}
}

// NetworkName is the name of a stage's network: the one already recorded, else the spec's network
// id, else "dlite-" and a short hash of the stage id.
func NetworkName(st *engine.Stage) string {
	if st.Network != "" {
		return st.Network
	}
	if st.Spec.Network.ID != "" {
		return st.Spec.Network.ID
	}
	return "dlite-" + shortHash(st.Spec.ID)
}

// VolumeName is the Docker volume of a stage's temp volume: its ID when the spec names one, else a
// name derived from the stage id and the volume's name.
func VolumeName(stageID string, v engine.Volume) string {
	if v.ID != "" {
		return v.ID
	}
	return "dlite-" + shortHash(stageID) + "-" + safeName(v.Name)
}

// ContainerName is the container of a step: unique per stage and step id, and a valid Docker name
// whatever characters the step id holds.
func ContainerName(stageID, stepID string) string {
	return "dlite-" + shortHash(stageID) + "-" + safeName(stepID)
}

// maxNamePart caps the readable part of a derived name; longer ids keep a hash of the whole.
const maxNamePart = 48

// safeName turns s into characters Docker accepts in names ([a-zA-Z0-9_.-]). A name that had to
// change (or be cut) gets a hash of the original, so two different ids never share a name.
func safeName(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	out := sb.String()
	if out == s && len(out) <= maxNamePart && out != "" {
		return out
	}
	if len(out) > maxNamePart {
		out = out[:maxNamePart]
	}
	return out + "-" + shortHash(s)[:8]
}

// shortHash is the first 12 hex digits of the SHA-256 of s.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// labels are the labels of every object the backend creates for a stage; extra labels come first
// so they cannot override the ownership labels.
func (b *Backend) labels(stageID string, extra ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range extra {
		for k, v := range m {
			out[k] = v
		}
	}
	out[engine.LabelStage] = stageID
	out[engine.LabelRunner] = b.opts.RunnerID
	return out
}

// checkOwner says whether an existing object with a name the backend wants belongs to the stage;
// one that does not is never reused or touched.
func checkOwner(kind, name, stageID string, labels map[string]string) error {
	owner, ok := labels[engine.LabelStage]
	switch {
	case !ok:
		return fmt.Errorf("%s %q exists and was not created by dlite (no %s label): %w", kind, name, engine.LabelStage, errNameTaken)
	case owner != stageID:
		return fmt.Errorf("%s %q exists and belongs to stage %q: %w", kind, name, owner, errNameTaken)
	}
	return nil
}

// errNameTaken is wrapped by errors about a name held by an object of another owner.
var errNameTaken = errors.New("name taken")
