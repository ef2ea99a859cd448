package dispatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/httprec"
	"github.com/dlite-dev/dlite/internal/manager"
)

// failureBody is the shape of every non-2xx answer of a task operation.
type failureBody struct {
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// answered maps a handler's recorded answer to an Outcome. A 2xx is success with the body as
// output (a handler that returns normally without writing answered 200). For spec handlers,
// anything else carries {message, data}; for legacy handlers the whole body is the error text.
func answered(r *httprec.Recorder, taskType string, spec bool) Outcome {
	status := r.Status()
	body := bytes.TrimSpace(r.Body())
	if status >= 200 && status < 300 {
		return Outcome{Code: manager.CodeOK, Data: asJSON(body)}
	}
	if spec {
		var fb failureBody
		if json.Unmarshal(body, &fb) == nil && fb.Message != "" {
			if r.Header().Get(errorCodeHeader) == string(errs.CodeInvalidTaskData) {
				return failed(errs.Newf(errs.CodeInvalidTaskData, "", "invalid %s data: %s", taskType, fb.Message), nil)
			}
			return failed(errs.New(errs.CodeHandlerFailed, "", fb.Message), nullToNil(fb.Data))
		}
	}
	msg := string(body)
	if msg == "" {
		msg = fmt.Sprintf("status %d %s", status, http.StatusText(status))
	}
	return failed(errs.New(errs.CodeHandlerFailed, "", msg), nil)
}

// asJSON returns the body as JSON output: as is when it is JSON, `{}` when it is empty, and as a
// JSON string otherwise, so the output can always be reported.
func asJSON(body []byte) json.RawMessage {
	if len(body) == 0 {
		return json.RawMessage("{}")
	}
	if json.Valid(body) {
		return json.RawMessage(bytes.Clone(body))
	}
	s, _ := json.Marshal(string(body))
	return s
}

func nullToNil(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}
