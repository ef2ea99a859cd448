package config

import (
	"fmt"
	"maps"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Drone configures the runner as a Drone runner, in the Drone runners' own terms. It is used
// when Host is set; a runner then talks to that Drone server instead of a Harness manager.
type Drone struct {
	// Proto is the scheme used to reach the server: http or https.
	Proto string `env:"DRONE_RPC_PROTO" flag:"drone-rpc-proto"`
	// Host is the server's host and optional port. Setting it selects the Drone backend.
	Host string `env:"DRONE_RPC_HOST" flag:"drone-rpc-host"`
	// Secret is the shared RPC secret, sent with every call and never logged.
	Secret string `env:"DRONE_RPC_SECRET" flag:"drone-rpc-secret"`
	// SkipVerify turns off verification of the server's certificate.
	SkipVerify bool `env:"DRONE_RPC_SKIP_VERIFY" flag:"drone-rpc-skip-verify"`
	// Name is the machine name the runner accepts stages as; the runner name by default.
	Name string `env:"DRONE_RUNNER_NAME" flag:"drone-runner-name"`
	// Capacity is how many stages run at once; it sets the runner's slots.
	Capacity int `env:"DRONE_RUNNER_CAPACITY" flag:"drone-runner-capacity"`
	// Labels must equal a stage's node labels for the runner to be offered it.
	Labels map[string]string `env:"DRONE_RUNNER_LABELS" flag:"drone-runner-labels"`
	// OS, Arch, Kernel and Variant describe the platform the runner takes stages for; OS and Arch
	// default to the host's.
	OS      string `env:"DRONE_RUNNER_OS" flag:"drone-runner-os"`
	Arch    string `env:"DRONE_RUNNER_ARCH" flag:"drone-runner-arch"`
	Kernel  string `env:"DRONE_RUNNER_KERNEL" flag:"drone-runner-kernel"`
	Variant string `env:"DRONE_RUNNER_VARIANT" flag:"drone-runner-variant"`
	// Type is the pipeline type the runner takes: DroneTypeDocker or DroneTypeExec.
	Type string `env:"DRONE_RUNNER_TYPE" flag:"drone-runner-type"`
	// MaxProcs bounds the steps of one stage that run at once.
	MaxProcs int `env:"DRONE_RUNNER_MAX_PROCS" flag:"drone-runner-max-procs"`
	// CloneImage is the image the clone step of docker pipelines runs in.
	CloneImage string `env:"DRONE_RUNNER_CLONE_IMAGE" flag:"drone-runner-clone-image"`
}

// The pipeline types a Drone runner takes.
const (
	// DroneTypeDocker runs pipelines whose steps are containers; the default, as for
	// drone-runner-docker.
	DroneTypeDocker = "docker"
	// DroneTypeExec runs pipelines whose steps are host processes, as drone-runner-exec does.
	DroneTypeExec = "exec"
)

const defaultDroneCapacity = 2

// defaultDroneMaxProcs is how many steps of a stage run at once unless DRONE_RUNNER_MAX_PROCS
// says otherwise.
const defaultDroneMaxProcs = 8

// defaultDroneCloneImage is the clone image of docker pipelines unless DRONE_RUNNER_CLONE_IMAGE
// names another: Drone's own, as its docker runner uses it.
const defaultDroneCloneImage = "drone/git:latest"

// The demonstrations `dlite run` gives when no manager and no Drone server is configured.
const (
	// DemoHarness runs example tasks and a Harness CI stage on an embedded mock manager.
	DemoHarness = "harness"
	// DemoDrone runs a Drone pipeline on an embedded mock Drone server.
	DemoDrone = "drone"
)

var keyDemo = key{"DLITE_DEMO", "demo"}

var (
	keyDroneProto      = key{"DRONE_RPC_PROTO", "drone-rpc-proto"}
	keyDroneHost       = key{"DRONE_RPC_HOST", "drone-rpc-host"}
	keyDroneSecret     = key{"DRONE_RPC_SECRET", "drone-rpc-secret"}
	keyDroneSkipVerify = key{"DRONE_RPC_SKIP_VERIFY", "drone-rpc-skip-verify"}
	keyDroneName       = key{"DRONE_RUNNER_NAME", "drone-runner-name"}
	keyDroneCapacity   = key{"DRONE_RUNNER_CAPACITY", "drone-runner-capacity"}
	keyDroneLabels     = key{"DRONE_RUNNER_LABELS", "drone-runner-labels"}
	keyDroneOS         = key{"DRONE_RUNNER_OS", "drone-runner-os"}
	keyDroneArch       = key{"DRONE_RUNNER_ARCH", "drone-runner-arch"}
	keyDroneKernel     = key{"DRONE_RUNNER_KERNEL", "drone-runner-kernel"}
	keyDroneVariant    = key{"DRONE_RUNNER_VARIANT", "drone-runner-variant"}
	keyDroneType       = key{"DRONE_RUNNER_TYPE", "drone-runner-type"}
	keyDroneMaxProcs   = key{"DRONE_RUNNER_MAX_PROCS", "drone-runner-max-procs"}
	keyDroneCloneImage = key{"DRONE_RUNNER_CLONE_IMAGE", "drone-runner-clone-image"}
)

// IsDrone reports whether the runner talks to a Drone server (DRONE_RPC_HOST is set).
func (c *Config) IsDrone() bool { return c.Drone.Host != "" }

// DroneEndpoint returns the Drone server's base URL, "<proto>://<host>".
func (c *Config) DroneEndpoint() string {
	proto := c.Drone.Proto
	if proto == "" {
		proto = "http"
	}
	return proto + "://" + c.Drone.Host
}

// DroneMachine returns the machine name the runner accepts stages as.
func (c *Config) DroneMachine() string {
	if c.Drone.Name != "" {
		return c.Drone.Name
	}
	return c.Name
}

func droneSettings() []setting {
	const g = "Drone server (set DRONE_RPC_HOST to run as a Drone runner instead of against a Harness manager)"
	return []setting{
		{key: keyDemo, group: "Demonstration", arg: "NAME", def: DemoHarness,
			usage: "Demonstration run when neither a manager endpoint nor a Drone host is set: harness (tasks and a CI stage on a mock manager) or drone (a pipeline on a mock Drone server).",
			parse: func(c *Config, v string) error { c.Demo = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{key: keyDroneProto, group: g, arg: "PROTO", def: "http",
			usage: "Scheme of the Drone server: http or https.",
			parse: func(c *Config, v string) error { c.Drone.Proto = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{key: keyDroneHost, group: g, arg: "HOST[:PORT]",
			usage: "Drone server to take stages from, e.g. drone.example.com; exclusive with a manager endpoint.",
			parse: func(c *Config, v string) error { c.Drone.Host = strings.TrimSpace(v); return nil }},
		{key: keyDroneSecret, group: g, arg: "SECRET",
			usage: "Shared RPC secret of the Drone server (its DRONE_RPC_SECRET); required with a Drone host.",
			parse: func(c *Config, v string) error { c.Drone.Secret = strings.TrimSpace(v); return nil }},
		{key: keyDroneSkipVerify, group: g, def: "false",
			usage: "Do not verify the Drone server's certificate (tests only; a warning is logged).",
			parse: boolean(func(c *Config) *bool { return &c.Drone.SkipVerify })},
		{key: keyDroneName, group: g, arg: "NAME", defText: "the runner name",
			usage: "Machine name the runner accepts stages as.",
			parse: func(c *Config, v string) error { c.Drone.Name = strings.TrimSpace(v); return nil }},
		{key: keyDroneCapacity, group: g, arg: "N", def: strconv.Itoa(defaultDroneCapacity),
			usage: "Stages run at once (1 to 100000); replaces the parallel workers with a Drone host.",
			parse: func(c *Config, v string) error {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return fmt.Errorf("must be an integer, got %q", v)
				}
				c.Drone.Capacity = n
				return nil
			}},
		{key: keyDroneLabels, group: g, arg: "K:V,...",
			usage: "Labels a stage's node labels must equal, e.g. zone:east,gpu:no.",
			parse: func(c *Config, v string) error {
				labels, err := parseLabels(v)
				c.Drone.Labels = labels
				return err
			}},
		{key: keyDroneOS, group: g, arg: "OS", def: runtime.GOOS,
			usage: "Operating system of the stages the runner takes.",
			parse: func(c *Config, v string) error { c.Drone.OS = strings.TrimSpace(v); return nil }},
		{key: keyDroneArch, group: g, arg: "ARCH", def: runtime.GOARCH,
			usage: "Architecture of the stages the runner takes.",
			parse: func(c *Config, v string) error { c.Drone.Arch = strings.TrimSpace(v); return nil }},
		{key: keyDroneKernel, group: g, arg: "KERNEL",
			usage: "Kernel of the stages the runner takes; matched only against stages that name one.",
			parse: func(c *Config, v string) error { c.Drone.Kernel = strings.TrimSpace(v); return nil }},
		{key: keyDroneVariant, group: g, arg: "VARIANT",
			usage: "Architecture variant of the stages the runner takes (e.g. v7); matched only against stages that name one.",
			parse: func(c *Config, v string) error { c.Drone.Variant = strings.TrimSpace(v); return nil }},
		{key: keyDroneType, group: g, arg: "TYPE", def: DroneTypeDocker,
			usage: "Pipeline type the runner takes: docker (steps in containers) or exec (steps on the host).",
			parse: func(c *Config, v string) error { c.Drone.Type = strings.ToLower(strings.TrimSpace(v)); return nil }},
		{key: keyDroneMaxProcs, group: g, arg: "N", def: strconv.Itoa(defaultDroneMaxProcs),
			usage: "Steps of one stage run at once, at most (parallel branches of depends_on beyond it wait).",
			parse: func(c *Config, v string) error {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil || n < 1 {
					return fmt.Errorf("must be a positive integer, got %q", v)
				}
				c.Drone.MaxProcs = n
				return nil
			}},
		{key: keyDroneCloneImage, group: g, arg: "IMAGE", def: defaultDroneCloneImage,
			usage: "Image the clone step of docker pipelines runs in (pulled when missing); it needs git and /bin/sh.",
			parse: func(c *Config, v string) error { c.Drone.CloneImage = strings.TrimSpace(v); return nil }},
	}
}

// parseLabels reads "k:v,k2:v2" into a map. Blank entries are ignored.
func parseLabels(v string) (map[string]string, error) {
	labels := map[string]string{}
	for entry := range strings.SplitSeq(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, val, ok := strings.Cut(entry, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("must be key:value pairs separated by commas, got %q", entry)
		}
		labels[k] = strings.TrimSpace(val)
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}

// validateDemo checks the demonstration's name, and that one is asked for only where it runs.
func (c *Config) validateDemo(r *report) {
	switch c.Demo {
	case "", DemoHarness:
	case DemoDrone:
		if !c.Embedded() {
			r.add(keyDemo, "is %s, but a demonstration runs only when neither %s nor %s is set", c.Demo, keyManagerEndpoint, keyDroneHost)
		}
	default:
		r.add(keyDemo, "must be %s or %s, got %q", DemoHarness, DemoDrone, c.Demo)
	}
}

// validateDrone checks the Drone settings when a Drone host is set.
func (c *Config) validateDrone(r *report) {
	if !c.IsDrone() {
		return
	}
	if c.ManagerEndpoint != "" || c.InternalManagerEndpoint != "" {
		r.add(keyDroneHost, "set together with %s: a runner serves either a Harness manager or a Drone server; unset one of them", keyManagerEndpoint)
	}
	switch c.Drone.Proto {
	case "", "http", "https":
	default:
		r.add(keyDroneProto, "must be http or https, got %q", c.Drone.Proto)
	}
	if strings.Contains(c.Drone.Host, "/") {
		r.add(keyDroneHost, "must be a host name with an optional port, without scheme or path, got %q", c.Drone.Host)
	} else if _, port, err := net.SplitHostPort(c.Drone.Host); err == nil && port == "" {
		r.add(keyDroneHost, "has an empty port: %q", c.Drone.Host)
	}
	if c.Drone.Secret == "" {
		r.add(keyDroneSecret, "required with %s: the Drone server refuses every call without it", keyDroneHost)
	}
	if c.Drone.Capacity < minParallelWorkers || c.Drone.Capacity > maxParallelWorkers {
		r.add(keyDroneCapacity, "must be between %d and %d, got %q", minParallelWorkers, maxParallelWorkers, strconv.Itoa(c.Drone.Capacity))
	}
	switch c.Drone.Type {
	case DroneTypeDocker, DroneTypeExec:
	default:
		r.add(keyDroneType, "must be %s or %s, got %q", DroneTypeDocker, DroneTypeExec, c.Drone.Type)
	}
	if c.Drone.CloneImage == "" {
		r.add(keyDroneCloneImage, "is empty: name the image the clone step of docker pipelines runs in (default %s)", defaultDroneCloneImage)
	}
	if c.Drone.Type == DroneTypeDocker && c.Docker == DockerOff {
		r.add(keyDroneType, "is %s but %s is off: set it to exec, or let the runner use Docker", DroneTypeDocker, keyDocker)
	}
}

// labelList renders labels for logs, sorted by key.
func labelList(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+":"+labels[k])
	}
	return strings.Join(parts, ",")
}
