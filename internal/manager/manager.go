package manager

import (
	"context"
	"encoding/json"
	"time"

	"github.com/dlite-dev/dlite/tasks"
)

// Manager is a task manager as the runtime sees it. Every method returns an *errs.Error on failure,
// so callers can tell retryable failures (errs.Retryable) from permanent ones.
type Manager interface {
	// Register announces the delegate and returns the id the manager gave it. Implementations that
	// know a capacity endpoint report Delegate.Capacity there as part of registering.
	Register(ctx context.Context, d Delegate) (Registration, error)
	// Heartbeat tells the manager the delegate is alive and returns its status.
	Heartbeat(ctx context.Context, delegateID string, d Delegate) (Heartbeat, error)
	// Poll returns the task events waiting for the delegate.
	Poll(ctx context.Context, delegateID string) ([]Event, error)
	// Acquire claims a task. It returns an error matching errs.ErrAcquireConflict when another
	// delegate holds it.
	Acquire(ctx context.Context, delegateID, taskID string) (*Task, error)
	// Report delivers a task's result.
	Report(ctx context.Context, r Result) error
}

// Delegate is what a runner says of itself when it registers and in every heartbeat.
type Delegate struct {
	Name     string
	HostName string
	IP       string
	// Token identifies this runner process to the manager. It is random per process and is never
	// the account secret.
	Token string
	Tags  []string
	// TaskTypes are the task types the runner has handlers for, sorted.
	TaskTypes []string
	// Capacity is how many tasks the runner runs at once.
	Capacity int
	// Running are the ids of the tasks running now (sent with heartbeats).
	Running []string
	// At is the time of the registration or heartbeat.
	At time.Time
}

// Registration is the manager's answer to Register.
type Registration struct {
	DelegateID string
	// Action is an instruction from the manager (SELF_DESTRUCT, MIGRATE), or empty.
	Action string
}

// Status is the manager's view of a delegate, from a heartbeat.
type Status string

// The statuses a heartbeat can report.
const (
	StatusEnabled            Status = "ENABLED"
	StatusWaitingForApproval Status = "WAITING_FOR_APPROVAL"
	StatusDisabled           Status = "DISABLED"
	StatusDeleted            Status = "DELETED"
	// StatusUnknown means the manager answered without a delegate: it does not know this one.
	StatusUnknown Status = "UNKNOWN"
)

// Heartbeat is the manager's answer to a heartbeat.
type Heartbeat struct {
	Status     Status
	DelegateID string
}

// Event is an entry in the delegate's queue: work to do, or an abort of a task.
type Event struct {
	TaskID   string
	TaskType string
	Sync     bool
	// Abort means: stop the task if it runs here. Otherwise the event offers the task.
	Abort bool
}

// Task is an acquired task: its envelope and its data.
type Task struct {
	tasks.Envelope
	// Data is the task's input as the manager sent it.
	Data json.RawMessage
	// Raw is the whole task as the manager sent it, for handlers that take the full envelope.
	Raw json.RawMessage
}

// Code is how a task ended.
type Code string

// The outcomes a runner reports.
const (
	CodeOK      Code = "OK"
	CodeFailed  Code = "FAILED"
	CodeTimeout Code = "TIMEOUT"
)

// Endpoint says where a task's result goes.
type Endpoint string

// The result endpoints.
const (
	// EndpointLegacy answers on the manager's legacy status endpoint (data must be a JSON object).
	EndpointLegacy Endpoint = "legacy"
	// EndpointRunner answers on the runner status endpoint (tasks with runnerResponse true).
	EndpointRunner Endpoint = "runner"
)

// Result is a task's outcome, ready to deliver.
type Result struct {
	TaskID   string `json:"taskId"`
	TaskType string `json:"taskType"`
	// DelegateID is the delegate that acquired and ran the task.
	DelegateID string   `json:"delegateId"`
	Endpoint   Endpoint `json:"endpoint"`
	Code       Code     `json:"code"`
	Error      string   `json:"error,omitempty"`
	// Data is the handler's JSON output, or nil when it produced none.
	Data       json.RawMessage `json:"data,omitempty"`
	FinishedAt time.Time       `json:"finishedAt"`
	// Update is zero for a task's outcome. Above zero the result is the task's Update-th update,
	// sent by its handler while it ran (tasks.Update): Data is the handler's update and Code is
	// empty. A task's updates are delivered in their order, each once its delivery before it has
	// ended, and its outcome after all of them; a manager with no updates refuses them for good.
	Update int `json:"update,omitempty"`
}

// IsUpdate reports whether r is an update of a running task rather than its outcome.
func (r Result) IsUpdate() bool { return r.Update > 0 }

// Offerer is a manager whose polls are long polls that each offer at most one task and do not
// hold it for the runner: it may be offered to other runners until one acquires it. A runner asks
// such a manager only with a slot free for the answer, keeping one offer in flight per free slot,
// each holding the slot it reserved; a poller finds the capability by a type assertion on its
// source.
type Offerer interface {
	// Offer waits for a task the delegate may run and returns it, or nil when the manager had
	// none before its long poll ended.
	Offer(ctx context.Context, delegateID string) (*Event, error)
}

// Recoverer is a manager that keeps, on the runner's disk, the tasks this runner took and has not
// reported yet. A Drone server offers a stage it gave a runner to no other runner, so a stage
// running here when the runner stopped without answering it (a crash, a kill) would stay taken
// until someone cancels it. At start, before taking work, the runtime answers each such task that
// its spool holds no outcome for as failed with errs.ErrInterrupted.
type Recoverer interface {
	// Unfinished returns the tasks taken here and not yet reported.
	Unfinished() ([]Unfinished, error)
}

// Unfinished is a task a Recoverer holds as taken and not reported.
type Unfinished struct {
	TaskID   string
	TaskType string
}

// AbortSource is a manager that tells the runner to stop tasks outside its polls (by a watch it
// keeps open for each running task, say). The runtime acts on each id as on an abort event.
type AbortSource interface {
	// Aborts receives the id of each task the manager wants stopped.
	Aborts() <-chan string
}
