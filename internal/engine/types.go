package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// Errors the engine returns; front-ends map them to their wire's failure answers.
var (
	// ErrStageNotFound means no stage record exists for the id.
	ErrStageNotFound = errors.New("stage not found")
	// ErrInvalid wraps input the engine refuses (a missing id, a relative path, an unknown volume).
	ErrInvalid = errors.New("invalid stage or step")
	// ErrNoBackend means no configured backend can run the step (a container step without Docker).
	ErrNoBackend = errors.New("no backend can run the step")
	// ErrNotAllowed means the runner's policy forbids what the step asks (privileged, Docker socket).
	ErrNotAllowed = errors.New("not allowed by the runner's configuration")
)

// Labels the engine and its backends put on every object they create.
const (
	LabelStage  = "io.dlite.stage"
	LabelRunner = "io.dlite.runner"
	LabelStep   = "io.dlite.step"
)

// StageSpec is what a front-end asks of setup. Everything a later step needs is in it; the engine
// stores it in the stage record before setup answers.
type StageSpec struct {
	// ID is the stage's runtime id, unique on the manager. Required.
	ID string `json:"id"`
	// Network is the stage's container network; an empty ID lets the engine name it.
	Network Network `json:"network"`
	// WorkspacePath is where container steps see the stage's workspace, and run unless they say
	// otherwise: a clean absolute path, ContainerWorkspace when empty. Front-ends whose steps
	// expect their sources elsewhere (Drone's /drone/src) set it; host steps always run in the
	// workspace's own directory.
	WorkspacePath string `json:"workspacePath,omitempty"`
	// Volumes are the stage's volumes, mounted into steps by name.
	Volumes []Volume `json:"volumes,omitempty"`
	// Files are created at setup and deleted at cleanup.
	Files []File `json:"files,omitempty"`
	// Env is given to every step of the stage.
	Env map[string]string `json:"env,omitempty"`
	// Secrets are values masked in every log line of the stage.
	Secrets []string `json:"secrets,omitempty"`
	// Logs says where the stage's step logs go; the log transport is chosen from it per stage.
	Logs logstream.Config `json:"logs"`
	// LogKey is the log stream of setup itself; empty means setup writes no log.
	LogKey string `json:"logKey,omitempty"`
	// MountDockerSocket asks for the Docker socket in every container step (nil: the runner's default).
	MountDockerSocket *bool `json:"mountDockerSocket,omitempty"`
	// Services are detached steps started by setup (background services).
	Services []StepSpec `json:"services,omitempty"`
	// Data is front-end data the engine carries untouched (for example a test-intelligence config).
	Data map[string]json.RawMessage `json:"data,omitempty"`
}

// ContainerWorkspacePath is where the stage's container steps see its workspace: WorkspacePath, or
// ContainerWorkspace when the spec sets none.
func (s *StageSpec) ContainerWorkspacePath() string {
	if s.WorkspacePath != "" {
		return s.WorkspacePath
	}
	return ContainerWorkspace
}

// Network is a stage's container network.
type Network struct {
	ID      string            `json:"id,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Options map[string]string `json:"options,omitempty"`
}

// Volume is a stage volume: exactly one of Temp and Host is set.
type Volume struct {
	// Name is what steps mount it by.
	Name string `json:"name"`
	// ID names the Docker volume of a temp volume.
	ID   string      `json:"id,omitempty"`
	Temp *TempVolume `json:"temp,omitempty"`
	Host *HostVolume `json:"host,omitempty"`
}

// TempVolume lives as long as the stage: a Docker volume, or a directory for host steps.
type TempVolume struct {
	Medium    string            `json:"medium,omitempty"`
	SizeLimit int64             `json:"sizeLimit,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// HostVolume is a directory of the runner's host.
type HostVolume struct {
	Path     string            `json:"path"`
	Create   bool              `json:"create,omitempty"`
	Remove   bool              `json:"remove,omitempty"`
	ReadOnly bool              `json:"readOnly,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// File is a file or directory created for a stage or a step.
type File struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode,omitempty"`
	Data  string `json:"data,omitempty"`
	IsDir bool   `json:"isDir,omitempty"`
}

// StageState is where a stage is in its life.
type StageState string

// The states of a stage record.
const (
	StageInitializing StageState = "initializing"
	StageReady        StageState = "ready"
	StageDestroying   StageState = "destroying"
)

// Stage is the durable record of a stage.
type Stage struct {
	Spec StageSpec `json:"spec"`
	// Runner is the id of the runner that set the stage up.
	Runner string     `json:"runner"`
	State  StageState `json:"state"`
	// Workspace is the host directory of the stage's workspace; Shared holds the steps' output,
	// export and artifact files.
	Workspace string `json:"workspace"`
	Shared    string `json:"shared"`
	// Network is the name of the network a backend created, or "".
	Network string `json:"network,omitempty"`
	// Exports are the DRONE_ENV exports of finished steps, given to later host steps.
	Exports map[string]string `json:"exports,omitempty"`
	// Steps are the steps started so far, by step id.
	Steps map[string]*StepRecord `json:"steps,omitempty"`
	// Services are the results of starting the stage's services at setup.
	Services []ServiceStatus `json:"services,omitempty"`
	// SetupError is why setup failed, when it did; a repeated setup answers it again.
	SetupError string    `json:"setupError,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// ServiceStatus is how starting one service went.
type ServiceStatus struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Image  string `json:"image,omitempty"`
	LogKey string `json:"logKey,omitempty"`
	// Running is false when the service could not be started; Error says why.
	Running bool   `json:"running"`
	Error   string `json:"error,omitempty"`
}

// StepRecord is what the stage record keeps of a started step.
type StepRecord struct {
	ID       string    `json:"id"`
	Name     string    `json:"name,omitempty"`
	Backend  string    `json:"backend"`
	Detached bool      `json:"detached,omitempty"`
	Started  time.Time `json:"started"`
	// Result is set once the step has ended.
	Result *StepResult `json:"result,omitempty"`
}

// PullPolicy says when a container step's image is pulled.
type PullPolicy string

// The pull policies.
const (
	PullDefault      PullPolicy = ""
	PullAlways       PullPolicy = "always"
	PullIfNotPresent PullPolicy = "if-not-present"
	PullNever        PullPolicy = "never"
)

// RegistryAuth are the credentials for pulling a step's image.
type RegistryAuth struct {
	Address  string `json:"address,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// VolumeMount mounts a stage volume into a step.
type VolumeMount struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// OutputType is the type of a typed output.
type OutputType string

// The output types.
const (
	OutputString OutputType = "STRING"
	OutputSecret OutputType = "SECRET"
)

// OutputSpec asks for the step's environment variable Value to be exported as output Key.
type OutputSpec struct {
	Key   string     `json:"key"`
	Value string     `json:"value"`
	Type  OutputType `json:"type,omitempty"`
}

// Output is an output a step produced.
type Output struct {
	Key   string     `json:"key"`
	Value string     `json:"value"`
	Type  OutputType `json:"type,omitempty"`
}

// StepSpec is one step to run. A step with an Image runs in a container; one without runs on the
// host.
type StepSpec struct {
	// ID identifies the step within its stage (and names its container). Required.
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	LogKey string `json:"logKey,omitempty"`

	Image string        `json:"image,omitempty"`
	Pull  PullPolicy    `json:"pull,omitempty"`
	Auth  *RegistryAuth `json:"auth,omitempty"`

	// Entrypoint runs Commands[0] as its last argument, e.g. ["sh", "-c"]. With no commands a
	// container step runs its image's own entrypoint (plugins).
	Entrypoint []string `json:"entrypoint,omitempty"`
	Commands   []string `json:"commands,omitempty"`

	Env     map[string]string `json:"env,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
	// WorkingDir is where the step runs; empty means the stage's workspace.
	WorkingDir string        `json:"workingDir,omitempty"`
	Volumes    []VolumeMount `json:"volumes,omitempty"`
	Files      []File        `json:"files,omitempty"`

	// OutputVars and Outputs name the environment variables the step exports as outputs.
	OutputVars []string     `json:"outputVars,omitempty"`
	Outputs    []OutputSpec `json:"outputs,omitempty"`

	// Timeout bounds the step; 0 means the caller's context alone bounds it.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Detach starts the step and returns at once; it ends at cleanup.
	Detach bool `json:"detach,omitempty"`

	// Container knobs; ignored on the host.
	Privileged        bool              `json:"privileged,omitempty"`
	User              string            `json:"user,omitempty"`
	PortBindings      map[string]string `json:"portBindings,omitempty"`
	NetworkAliases    []string          `json:"networkAliases,omitempty"`
	MountDockerSocket *bool             `json:"mountDockerSocket,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// StepStatus is how a step ended.
type StepStatus string

// The step statuses.
const (
	StepSuccess StepStatus = "success"
	// StepFailure: the step ran and exited non-zero (or was OOM-killed).
	StepFailure StepStatus = "failure"
	// StepTimeout: the step ran past its timeout and was stopped.
	StepTimeout StepStatus = "timeout"
	// StepAborted: the step was cancelled (an abort, a cleanup, a runner shutdown).
	StepAborted StepStatus = "aborted"
	// StepError: the step could not run (bad input, an image that does not exist, a backend error).
	StepError StepStatus = "error"
	// StepRunning: a detached step was started and runs on.
	StepRunning StepStatus = "running"
)

// StepResult is a step's outcome.
type StepResult struct {
	Status   StepStatus `json:"status"`
	ExitCode int        `json:"exitCode"`
	// OOMKilled is set when the step's container was killed for lack of memory.
	OOMKilled bool `json:"oomKilled,omitempty"`
	// Error is the message for the user: "exit status 2", "step timed out after 30s", ...
	Error string `json:"error,omitempty"`
	// OutputVars are the exported variables by name; Outputs the same with their types, in the
	// order asked for.
	OutputVars map[string]string `json:"outputVars,omitempty"`
	Outputs    []Output          `json:"outputs,omitempty"`
	// Artifact is the content of the step's artifact file, when it wrote one.
	Artifact []byte    `json:"artifact,omitempty"`
	Started  time.Time `json:"started"`
	Stopped  time.Time `json:"stopped,omitzero"`
}

// Store keeps stage records durably. Implementations write a record to stable storage before the
// call that changed it returns, and keep records readable only by the runner's user.
type Store interface {
	// Create stores a new record; it returns an error matching ErrStageExists when one exists.
	Create(ctx context.Context, st *Stage) error
	// Get returns the record of a stage, or an error matching ErrStageNotFound.
	Get(ctx context.Context, id string) (*Stage, error)
	// Update applies fn to the stored record and stores the result, atomically with respect to
	// other updates of the same stage in this process.
	Update(ctx context.Context, id string, fn func(*Stage) error) (*Stage, error)
	// Delete removes a record; deleting a missing one is not an error.
	Delete(ctx context.Context, id string) error
	// List returns every stored record.
	List(ctx context.Context) ([]*Stage, error)
}

// ErrStageExists is returned by Store.Create for an id that already has a record.
var ErrStageExists = errors.New("stage exists")

// StepPaths says where a step sees the stage's directories: the host paths for host steps, the
// mount points for container steps.
type StepPaths struct {
	Workspace string
	Shared    string
}

// Run is a step ready to start: its spec and the environment and working directory the engine
// assembled for it (stage env, exports, output-file variables, step env).
type Run struct {
	Stage *Stage
	Step  *StepSpec
	Env   map[string]string
	// WorkingDir is where the step runs, as the step sees it.
	WorkingDir string
	// Output receives the step's combined stdout and stderr.
	Output io.Writer
}

// Backend is one place steps run: the host or Docker. The engine calls it; front-ends never do.
type Backend interface {
	// Name is "host" or "docker"; it is stored in step records.
	Name() string
	// Paths says where the stage's workspace and shared directory appear to this backend's steps.
	Paths(st *Stage) StepPaths
	// SetupStage creates what the stage's steps need in this backend (network, volumes). It is
	// idempotent: objects that exist (found by their labels or names) are kept.
	SetupStage(ctx context.Context, st *Stage) error
	// Start starts a step. A step whose id is already running in this backend is not started
	// again: Start returns a Process that waits for the running one.
	Start(ctx context.Context, r Run) (Process, error)
	// DestroyStage stops and removes everything this backend holds for the stage, found by the
	// stage id label, whether or not the record knows it. It is idempotent.
	DestroyStage(ctx context.Context, stageID string) error
}

// Process is a started step.
type Process interface {
	// Wait waits for the step to end and returns its exit code. It returns early with ctx's error.
	Wait(ctx context.Context) (Exit, error)
	// Stop ends the step: a graceful signal, then a kill after grace.
	Stop(ctx context.Context, grace time.Duration) error
}

// Exit is how a process ended.
type Exit struct {
	Code      int
	OOMKilled bool
}
