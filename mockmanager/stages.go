package mockmanager

import (
	"context"
	"encoding/json"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
)

// StageStatus is a CI stage as the mock manager sees it: its tasks and the delegate it is pinned to.
type StageStatus = adminapi.StageStatus

// ciRole is what a CI task does for its stage.
type ciRole int

const (
	roleNone ciRole = iota
	roleInit
	roleStep
	roleCleanup
)

// ciRoles are the CI task types and their roles. The manager restricts a stage's execute and
// cleanup tasks to the delegate that answered its initialize task.
var ciRoles = map[string]ciRole{
	"DLITE_CI_VM_INITIALIZE_TASK": roleInit,
	"DLITE_CI_VM_EXECUTE_TASK":    roleStep,
	"DLITE_CI_VM_EXECUTE_TASK_V2": roleStep,
	"DLITE_CI_VM_CLEANUP_TASK":    roleCleanup,
	"DLITE_CI_VM_CLEANUP_TASK_V2": roleCleanup,
	"CI_DOCKER_INITIALIZE_TASK":   roleInit,
	"CI_DOCKER_EXECUTE_TASK":      roleStep,
	"CI_DOCKER_CLEANUP_TASK":      roleCleanup,
}

// ciStageData holds every place a CI task's data names its stage, in both families and spellings.
type ciStageData struct {
	SetupVMRequest *struct {
		ID string `json:"id"`
	} `json:"setup_vm_request"`
	ExecuteStepRequest *struct {
		StageRuntimeID string `json:"stage_runtime_id"`
	} `json:"execute_step_request"`
	StageRuntimeID      string `json:"stage_runtime_id"`
	StageRuntimeIDCamel string `json:"stageRuntimeID"`
	ID                  string `json:"id"`
}

// stageOf returns the stage runtime id a CI task's data names, or "" for other tasks and for data
// that names none.
func stageOf(typ string, data *json.RawMessage) string {
	if ciRoles[typ] == roleNone || data == nil {
		return ""
	}
	var d ciStageData
	if json.Unmarshal(*data, &d) != nil {
		return ""
	}
	switch {
	case d.SetupVMRequest != nil && d.SetupVMRequest.ID != "":
		return d.SetupVMRequest.ID
	case d.ExecuteStepRequest != nil && d.ExecuteStepRequest.StageRuntimeID != "":
		return d.ExecuteStepRequest.StageRuntimeID
	case d.StageRuntimeID != "":
		return d.StageRuntimeID
	case d.StageRuntimeIDCamel != "":
		return d.StageRuntimeIDCamel
	default:
		return d.ID
	}
}

// answeredDelegate returns the delegate id an initialize task's answer names in its
// delegate_meta_info (delegateMetaInfo in the Docker family), or "".
func answeredDelegate(data *json.RawMessage) string {
	if data == nil {
		return ""
	}
	var a struct {
		VM *struct {
			ID string `json:"id"`
		} `json:"delegate_meta_info"`
		Docker *struct {
			ID string `json:"id"`
		} `json:"delegateMetaInfo"`
	}
	if json.Unmarshal(*data, &a) != nil {
		return ""
	}
	if a.VM != nil && a.VM.ID != "" {
		return a.VM.ID
	}
	if a.Docker != nil {
		return a.Docker.ID
	}
	return ""
}

// pinLocked records the delegate an initialize task's answer pins its stage to. Only the first
// answer of the task counts, like the outcome the manager stores.
func (s *Server) pinLocked(t *task, r RecordedResponse) {
	if t.stage == "" || ciRoles[t.typ] != roleInit || len(t.responses) != 1 {
		return
	}
	if id := answeredDelegate(r.Data); id != "" {
		s.pins[t.stage] = id
		s.log.Info("stage pinned", "stage", t.stage, "delegate", id, "task", t.id)
	}
}

// eligibleLocked reports whether the delegate may be offered and may acquire the task: a pinned
// stage's execute and cleanup tasks go to its delegate only.
func (s *Server) eligibleLocked(delegateID string, t *task) bool {
	if t.stage == "" || ciRoles[t.typ] == roleInit {
		return true
	}
	pinned, ok := s.pins[t.stage]
	return !ok || pinned == delegateID
}

// Stage returns the CI stage with the given runtime id, or an error matching errs.ErrNotFound
// when no task named it.
func (s *Server) Stage(id string) (StageStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(s.now())
	st, ok := s.stageLocked(id)
	if !ok {
		return StageStatus{}, errs.New(errs.CodeNotFound, "stage "+id, "no task names this stage")
	}
	return st, nil
}

// Stages returns every CI stage a task named, in the order their first tasks were enqueued.
func (s *Server) Stages() []StageStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reapLocked(s.now())
	out := []StageStatus{}
	seen := map[string]bool{}
	for _, t := range s.taskOrder {
		if t.stage == "" || seen[t.stage] {
			continue
		}
		seen[t.stage] = true
		st, _ := s.stageLocked(t.stage)
		out = append(out, st)
	}
	return out
}

func (s *Server) stageLocked(id string) (StageStatus, bool) {
	st := StageStatus{Id: id, Tasks: []TaskStatus{}}
	for _, t := range s.taskOrder {
		if t.stage == id {
			st.Tasks = append(st.Tasks, t.status())
		}
	}
	if pinned, ok := s.pins[id]; ok {
		st.PinnedTo = new(pinned)
	}
	return st, len(st.Tasks) > 0
}

func (a adminAPI) ListStages(context.Context, adminapi.ListStagesRequestObject) (adminapi.ListStagesResponseObject, error) {
	return adminapi.ListStages200JSONResponse(a.s.Stages()), nil
}

func (a adminAPI) GetStage(_ context.Context, req adminapi.GetStageRequestObject) (adminapi.GetStageResponseObject, error) {
	st, err := a.s.Stage(req.Id)
	if err != nil {
		return adminapi.GetStage404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	}
	return adminapi.GetStage200JSONResponse(st), nil
}
