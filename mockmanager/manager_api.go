package mockmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
)

// managerAPI serves the Harness manager's delegate API over the Server's state. Requests reach it
// validated and authenticated (see contract.middleware), so it only decides on the state.
type managerAPI struct{ s *Server }

func managerError(code, format string, args ...any) managerapi.Error {
	return managerapi.Error{Code: new(code), Message: fmt.Sprintf(format, args...)}
}

func (a managerAPI) RegisterDelegate(_ context.Context, req managerapi.RegisterDelegateRequestObject) (managerapi.RegisterDelegateResponseObject, error) {
	id := a.s.register(*req.Body)
	a.s.log.Info("delegate registered", "delegate", id, "name", deref(req.Body.DelegateName))
	return managerapi.RegisterDelegate200JSONResponse{
		MetaData:         &map[string]any{},
		Resource:         &managerapi.DelegateRegisterResource{DelegateId: &id},
		ResponseMessages: &[]managerapi.ResponseMessage{},
	}, nil
}

func (a managerAPI) Heartbeat(_ context.Context, req managerapi.HeartbeatRequestObject) (managerapi.HeartbeatResponseObject, error) {
	id := deref(req.Body.DelegateId)
	status, ok := a.s.heartbeat(id)
	if !ok {
		return unknownDelegateHeartbeat{}, nil
	}
	return managerapi.Heartbeat200JSONResponse{
		MetaData: &map[string]any{},
		Resource: &managerapi.HeartbeatResource{
			DelegateId:          &id,
			Status:              new(managerapi.HeartbeatStatus(status)),
			DelegateRandomToken: req.Body.DelegateRandomToken,
		},
		ResponseMessages: &[]managerapi.ResponseMessage{},
	}, nil
}

// unknownDelegateHeartbeat answers a heartbeat from a delegate the manager does not know. The real
// manager sends an explicit "resource": null, which the generated type cannot express (it omits a
// nil resource), and clients must handle exactly that.
type unknownDelegateHeartbeat struct{}

func (unknownDelegateHeartbeat) VisitHeartbeatResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := io.WriteString(w, `{"metaData":{},"resource":null,"responseMessages":[]}`+"\n")
	return err
}

func (a managerAPI) RegisterCapacity(_ context.Context, req managerapi.RegisterCapacityRequestObject) (managerapi.RegisterCapacityResponseObject, error) {
	if !a.s.setCapacity(req.DelegateId, req.Body.MaximumNumberOfBuilds) {
		return managerapi.RegisterCapacity404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("not_found", "delegate %s is not registered", req.DelegateId))}, nil
	}
	return managerapi.RegisterCapacity200Response{}, nil
}

func (a managerAPI) GetTaskEvents(_ context.Context, req managerapi.GetTaskEventsRequestObject) (managerapi.GetTaskEventsResponseObject, error) {
	events, result, err := a.s.events(req.DelegateId, deref(req.Params.SyncOnly))
	if err != nil {
		return nil, err
	}
	switch result {
	case outcomeUnknownDelegate:
		return managerapi.GetTaskEvents404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("not_found", "delegate %s is not registered", req.DelegateId))}, nil
	case outcomeDeletedDelegate:
		return managerapi.GetTaskEvents404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("deleted", "delegate %s is deleted; register again", req.DelegateId))}, nil
	}
	return managerapi.GetTaskEvents200JSONResponse{DelegateTaskEvents: &events}, nil
}

func (a managerAPI) AcquireTask(_ context.Context, req managerapi.AcquireTaskRequestObject) (managerapi.AcquireTaskResponseObject, error) {
	t, result, state := a.s.acquire(req.DelegateId, req.Params.DelegateInstanceId, req.TaskId)
	notFound := func(code, format string, args ...any) managerapi.AcquireTaskResponseObject {
		return managerapi.AcquireTask404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError(code, format, args...))}
	}
	switch result {
	case outcomeUnknownDelegate:
		return notFound("not_found", "delegate %s is not registered", req.DelegateId), nil
	case outcomeDeletedDelegate:
		return notFound("deleted", "delegate %s is deleted; register again", req.DelegateId), nil
	case outcomeUnknownTask:
		return notFound("not_found", "task %s does not exist", req.TaskId), nil
	case outcomeConflict:
		a.s.log.Info("acquire refused", "delegate", req.DelegateId, "task", req.TaskId, "state", state)
		return managerapi.AcquireTask409JSONResponse{ConflictJSONResponse: managerapi.ConflictJSONResponse(
			managerError("conflict", "task %s is %s, not queued", req.TaskId, state))}, nil
	}
	a.s.log.Info("task acquired", "delegate", req.DelegateId, "task", req.TaskId)
	return managerapi.AcquireTask200JSONResponse(t), nil
}

func (a managerAPI) SendTaskStatus(_ context.Context, req managerapi.SendTaskStatusRequestObject) (managerapi.SendTaskStatusResponseObject, error) {
	r := RecordedResponse{
		Endpoint:   adminapi.ResponseEndpointLegacy,
		DelegateId: new(req.DelegateId),
		Code:       string(req.Body.Code),
		Data:       new(append(json.RawMessage(nil), req.Body.Data...)),
	}
	var data struct {
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal(req.Body.Data, &data) == nil && data.ErrorMessage != nil {
		r.Error = data.ErrorMessage
	}
	if !a.record(req.TaskId, r) {
		return managerapi.SendTaskStatus404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("not_found", "task %s does not exist", req.TaskId))}, nil
	}
	return managerapi.SendTaskStatus200Response{}, nil
}

func (a managerAPI) SendRunnerTaskStatus(_ context.Context, req managerapi.SendRunnerTaskStatusRequestObject) (managerapi.SendRunnerTaskStatusResponseObject, error) {
	if !a.record(req.TaskId, runnerRecord(adminapi.ResponseEndpointRunner, req.Params.DelegateId, req.Body)) {
		return managerapi.SendRunnerTaskStatus404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("not_found", "task %s does not exist", req.TaskId))}, nil
	}
	return managerapi.SendRunnerTaskStatus200Response{}, nil
}

func (a managerAPI) SendTaskStatusV2(_ context.Context, req managerapi.SendTaskStatusV2RequestObject) (managerapi.SendTaskStatusV2ResponseObject, error) {
	if !a.record(req.TaskId, runnerRecord(adminapi.ResponseEndpointV2, req.Params.RunnerId, req.Body)) {
		return managerapi.SendTaskStatusV2404JSONResponse{NotFoundJSONResponse: managerapi.NotFoundJSONResponse(
			managerError("not_found", "task %s does not exist", req.TaskId))}, nil
	}
	return managerapi.SendTaskStatusV2200Response{}, nil
}

func (a managerAPI) record(taskID string, r RecordedResponse) bool {
	if !a.s.respond(taskID, r) {
		return false
	}
	a.s.log.Info("task answered", "task", taskID, "endpoint", r.Endpoint, "delegate", deref(r.DelegateId), "code", r.Code)
	return true
}

// runnerRecord records an answer from the runner or v2 endpoint. Its data travelled as base64
// (already decoded by the JSON binding); it is kept as JSON when it is JSON, else as a JSON string,
// so tests can compare it either way.
func runnerRecord(endpoint adminapi.ResponseEndpoint, delegateID string, body *managerapi.RunnerTaskResponse) RecordedResponse {
	r := RecordedResponse{
		Endpoint:   endpoint,
		DelegateId: new(delegateID),
		Code:       string(body.Code),
		Error:      new(body.Error),
	}
	switch {
	case len(body.Data) == 0:
	case json.Valid(body.Data):
		r.Data = new(append(json.RawMessage(nil), body.Data...))
	default:
		s, _ := json.Marshal(string(body.Data)) // marshalling a string cannot fail
		r.Data = new(json.RawMessage(s))
	}
	return r
}
