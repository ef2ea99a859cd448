package dispatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
)

// recorder is the http.ResponseWriter a handler writes its answer to.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: make(http.Header)} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	// A handler that writes without WriteHeader answered 200, as net/http would have it.
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// failureBody is the shape of every non-2xx answer of a task operation.
type failureBody struct {
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// outcome maps the recorded answer to an Outcome. A 2xx is success with the body as output. For
// spec handlers, anything else carries {message, data}; for legacy handlers the whole body is the
// error text.
func (r *recorder) outcome(taskType string, spec bool) Outcome {
	status := r.status
	if status == 0 {
		// Nothing written at all: a handler that returns normally answered 200.
		status = http.StatusOK
	}
	body := bytes.TrimSpace(r.body.Bytes())
	if status >= 200 && status < 300 {
		return Outcome{Code: manager.CodeOK, Data: asJSON(body)}
	}
	if spec {
		var fb failureBody
		if json.Unmarshal(body, &fb) == nil && fb.Message != "" {
			if r.header.Get(errorCodeHeader) == string(errs.CodeInvalidTaskData) {
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
