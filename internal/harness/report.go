package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/internal/manager"
)

// Report delivers a task's result on the endpoint r.Endpoint names: the legacy status endpoint,
// whose data is always a JSON object and whose code is OK or FAILED, or the runner status
// endpoint, which carries the code (OK, FAILED, TIMEOUT), the error text and the output bytes.
// The Harness manager has no endpoint for a task's updates: an update is refused for good,
// without a call.
func (c *Client) Report(ctx context.Context, r manager.Result) error {
	op := "report task " + r.TaskID
	if r.IsUpdate() {
		return errs.New(errs.CodeManagerRejected, op, "the Harness manager takes no task updates")
	}
	if err := requireID(op, "task id", r.TaskID); err != nil {
		return err
	}
	if err := requireID(op, "delegate id", r.DelegateID); err != nil {
		return err
	}
	switch r.Endpoint {
	case manager.EndpointLegacy:
		body, err := legacyResponse(r)
		if err != nil {
			return errs.Wrap(errs.CodeInvalidTaskData, op, err)
		}
		_, _, err = c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
			return c.api.SendTaskStatus(ctx, r.TaskID, r.DelegateID, &gen.SendTaskStatusParams{AccountId: c.account}, body, edit)
		})
		return err
	case manager.EndpointRunner:
		params := &gen.SendRunnerTaskStatusParams{AccountId: c.account, DelegateId: r.DelegateID}
		_, _, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
			return c.api.SendRunnerTaskStatus(ctx, r.TaskID, params, runnerResponse(r), edit)
		})
		return err
	default:
		return errs.Newf(errs.CodeInvalidConfig, op, "unknown result endpoint %q (want %q or %q)",
			r.Endpoint, manager.EndpointLegacy, manager.EndpointRunner)
	}
}

// ReportV2 delivers a task's result on the v2 status endpoint, which names the runner that ran
// the task instead of the delegate. The body is the runner endpoint's; r.Endpoint and
// r.DelegateID are not used.
func (c *Client) ReportV2(ctx context.Context, runnerID string, r manager.Result) error {
	op := "report task " + r.TaskID
	if err := requireID(op, "task id", r.TaskID); err != nil {
		return err
	}
	if err := requireID(op, "runner id", runnerID); err != nil {
		return err
	}
	params := &gen.SendTaskStatusV2Params{AccountId: c.account, RunnerId: runnerID}
	_, _, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.SendTaskStatusV2(ctx, r.TaskID, params, runnerResponse(r), edit)
	})
	return err
}

// legacyResponse builds the legacy endpoint's body. The manager reads data as a JSON object, so
// any other output is wrapped as {"output": ...}, and a failure's reason goes into
// "errorMessage" because the code alone cannot carry it.
func legacyResponse(r manager.Result) (gen.TaskResponse, error) {
	code := gen.TaskResponseCodeOK
	if r.Code != manager.CodeOK {
		// The legacy endpoint knows no TIMEOUT; errorMessage says which failure it was.
		code = gen.TaskResponseCodeFAILED
	}
	data, err := legacyData(r.Data, code == gen.TaskResponseCodeOK, failureText(r))
	if err != nil {
		return gen.TaskResponse{}, err
	}
	return gen.TaskResponse{Id: r.TaskID, Type: r.TaskType, Code: code, Data: data}, nil
}

func legacyData(out json.RawMessage, ok bool, errText string) (json.RawMessage, error) {
	fields := map[string]json.RawMessage{}
	trimmed := bytes.TrimSpace(out)
	switch {
	case isEmpty(trimmed):
	case !json.Valid(trimmed):
		s, err := json.Marshal(string(out))
		if err != nil {
			return nil, err
		}
		fields["output"] = s
	case trimmed[0] == '{':
		if ok {
			return trimmed, nil
		}
		if err := json.Unmarshal(trimmed, &fields); err != nil {
			return nil, err
		}
	default:
		fields["output"] = trimmed
	}
	if !ok {
		msg, err := json.Marshal(errText)
		if err != nil {
			return nil, err
		}
		fields["errorMessage"] = msg
	}
	return json.Marshal(fields)
}

// runnerResponse builds the body of the runner and v2 endpoints. Data goes as the handler wrote
// it (base64 on the wire), and as {} when there is none: the manager decodes it as JSON.
func runnerResponse(r manager.Result) gen.RunnerTaskResponse {
	body := gen.RunnerTaskResponse{
		Id:    r.TaskID,
		Type:  r.TaskType,
		Code:  gen.RunnerTaskResponseCodeFAILED,
		Error: failureText(r),
		Data:  r.Data,
	}
	switch r.Code {
	case manager.CodeOK:
		body.Code, body.Error = gen.RunnerTaskResponseCodeOK, ""
	case manager.CodeTimeout:
		body.Code = gen.RunnerTaskResponseCodeTIMEOUT
	}
	if len(bytes.TrimSpace(body.Data)) == 0 {
		body.Data = []byte("{}")
	}
	return body
}

// failureText is why a task failed: the handler's error, or the outcome when it gave none.
func failureText(r manager.Result) string {
	switch {
	case r.Error != "":
		return r.Error
	case r.Code == manager.CodeTimeout:
		return "task timed out"
	default:
		return "task failed"
	}
}
