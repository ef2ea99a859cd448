package ci

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/tasks"
)

// Stages is the stage engine as the handlers use it; *engine.Engine implements it.
type Stages interface {
	Setup(ctx context.Context, spec engine.StageSpec) (*engine.Stage, error)
	Execute(ctx context.Context, stageID string, step engine.StepSpec) (engine.StepResult, error)
	Cleanup(ctx context.Context, stageID string) error
}

var _ Stages = (*engine.Engine)(nil)

// Options configure the CI task handlers.
type Options struct {
	// Engine runs the stages. Required.
	Engine Stages
	// HostName is answered in delegate_meta_info.host_name; os.Hostname() when empty.
	HostName string
	// IPAddress is the setup answer's ip_address; when empty, the first non-loopback address of
	// the host, or 127.0.0.1 when it has none. The steps run on this runner's own host, so the
	// manager only needs the address to be non-empty.
	IPAddress string
}

// Handlers serve the six CI stage task types of openapi/citasks.yaml. Build them with New.
type Handlers struct {
	engine  Stages
	host    string
	ip      string
	schemas schemas
}

var _ citasks.StrictServerInterface = (*Handlers)(nil)

// New returns the CI task handlers over opts.Engine.
func New(opts Options) (*Handlers, error) {
	if opts.Engine == nil {
		return nil, fmt.Errorf("ci: Options.Engine is required")
	}
	sch, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	h := &Handlers{engine: opts.Engine, host: opts.HostName, ip: opts.IPAddress, schemas: sch}
	if h.host == "" {
		if h.host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("ci: host name: %w", err)
		}
	}
	if h.ip == "" {
		h.ip = HostAddress()
	}
	return h, nil
}

// Register mounts the handlers on r at the paths of the task spec, POST /tasks/<TASK_TYPE>.
func (h *Handlers) Register(r citasks.EchoRouter) {
	citasks.RegisterHandlers(r, citasks.NewStrictHandler(h, nil))
}

// HostAddress returns the first global unicast address of the host's interfaces, IPv4 first, or
// 127.0.0.1 when it has none.
func HostAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "127.0.0.1"
}

// delegate is this runner's delegate_meta_info: the id the manager gave the runner, from the task's
// envelope, which pins the stage's later tasks to it.
func (h *Handlers) delegate(ctx context.Context) *citasks.VMDelegateMetaInfo {
	info := &citasks.VMDelegateMetaInfo{HostName: h.host}
	if env, ok := tasks.FromContext(ctx); ok {
		info.Id = env.Delegate.ID
	}
	return info
}

// setup runs a stage's setup; specErr is an error from reading the task, answered as a failure.
func (h *Handlers) setup(ctx context.Context, spec engine.StageSpec, specErr error) citasks.VMTaskExecutionResponse {
	ans := citasks.VMTaskExecutionResponse{DelegateMetaInfo: h.delegate(ctx)}
	if specErr != nil {
		return failure(ans, specErr)
	}
	st, err := h.engine.Setup(ctx, spec)
	if err != nil {
		tasks.Logger(ctx).Warn("stage setup failed", "stage", spec.ID, "err", err)
		return failure(ans, err)
	}
	ans.CommandExecutionStatus = citasks.CommandExecutionStatusSUCCESS
	ans.IpAddress = h.ip
	for _, s := range st.Services {
		svc := citasks.VMServiceStatus{Identifier: s.ID, Name: s.Name, Image: s.Image, LogKey: s.LogKey,
			Status: citasks.ServiceStateRUNNING, ErrorMessage: s.Error}
		if !s.Running {
			svc.Status = citasks.ServiceStateERROR
		}
		ans.ServiceStatuses = append(ans.ServiceStatuses, svc)
	}
	return ans
}

// execute runs one step of a stage; specErr is an error from reading the task.
func (h *Handlers) execute(ctx context.Context, stageID string, req citasks.StartStepRequest, specErr error) citasks.VMTaskExecutionResponse {
	var ans citasks.VMTaskExecutionResponse
	if specErr != nil {
		return failure(ans, specErr)
	}
	if stageID == "" {
		return failure(ans, fmt.Errorf("%w: the stage runtime id is missing", engine.ErrInvalid))
	}
	step, err := stepSpec(req)
	if err != nil {
		return failure(ans, err)
	}
	res, err := h.engine.Execute(ctx, stageID, step)
	if err != nil {
		tasks.Logger(ctx).Warn("step could not run", "stage", stageID, "step", step.ID, "err", err)
		return failure(ans, err)
	}
	ans.OutputVars = res.OutputVars
	ans.Artifact = res.Artifact
	for _, o := range res.Outputs {
		typ := citasks.OutputTypeSTRING
		if o.Type == engine.OutputSecret {
			typ = citasks.OutputTypeSECRET
		}
		ans.Outputs = append(ans.Outputs, citasks.Output{Key: o.Key, Value: o.Value, Type: typ})
	}
	if res.Status == engine.StepSuccess || res.Status == engine.StepRunning {
		ans.CommandExecutionStatus = citasks.CommandExecutionStatusSUCCESS
		return ans
	}
	ans.CommandExecutionStatus = citasks.CommandExecutionStatusFAILURE
	ans.ErrorMessage = res.Error
	if ans.ErrorMessage == "" {
		ans.ErrorMessage = fmt.Sprintf("step %s", res.Status)
	}
	return ans
}

// cleanup tears a stage down; specErr is an error from reading the task.
func (h *Handlers) cleanup(ctx context.Context, stageID string, specErr error) citasks.VMTaskExecutionResponse {
	ans := citasks.VMTaskExecutionResponse{DelegateMetaInfo: h.delegate(ctx)}
	if specErr == nil && stageID == "" {
		specErr = fmt.Errorf("%w: the stage runtime id is missing", engine.ErrInvalid)
	}
	if specErr != nil {
		return failure(ans, specErr)
	}
	if err := h.engine.Cleanup(ctx, stageID); err != nil {
		tasks.Logger(ctx).Warn("stage cleanup failed", "stage", stageID, "err", err)
		return failure(ans, err)
	}
	ans.CommandExecutionStatus = citasks.CommandExecutionStatusSUCCESS
	return ans
}

// failure turns ans into a FAILURE that says err.
func failure(ans citasks.VMTaskExecutionResponse, err error) citasks.VMTaskExecutionResponse {
	ans.CommandExecutionStatus = citasks.CommandExecutionStatusFAILURE
	ans.ErrorMessage = err.Error()
	return ans
}

// ok reports whether an answer's status is a success.
func ok(s citasks.CommandExecutionStatus) bool {
	return s == citasks.CommandExecutionStatusSUCCESS
}

// respond picks an operation's success or failure response.
func respond[R any](success bool, ok, fail R) R {
	if success {
		return ok
	}
	return fail
}

// message is the error the runtime reports for a failed answer; never empty.
func message(errorMessage string) string {
	if errorMessage == "" {
		return "FAILURE"
	}
	return errorMessage
}

// dockerAnswer spells a VM answer the way DockerTaskExecutionResponse is read (camelCase).
func dockerAnswer(v citasks.VMTaskExecutionResponse) citasks.DockerTaskExecutionResponse {
	d := citasks.DockerTaskExecutionResponse{
		CommandExecutionStatus: v.CommandExecutionStatus,
		ErrorMessage:           v.ErrorMessage,
		OutputVars:             v.OutputVars,
		Outputs:                v.Outputs,
		Artifact:               v.Artifact,
		IpAddress:              v.IpAddress,
	}
	if v.DelegateMetaInfo != nil {
		d.DelegateMetaInfo = &citasks.DockerDelegateMetaInfo{Id: v.DelegateMetaInfo.Id, HostName: v.DelegateMetaInfo.HostName}
	}
	for _, s := range v.ServiceStatuses {
		d.ServiceStatuses = append(d.ServiceStatuses, citasks.DockerServiceStatus{Identifier: s.Identifier, Name: s.Name,
			Image: s.Image, LogKey: s.LogKey, Status: s.Status, ErrorMessage: s.ErrorMessage})
	}
	return d
}
