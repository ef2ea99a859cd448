package harness

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// The eventType values of task events.
const (
	eventWork  = "DelegateTaskEvent"
	eventAbort = "DelegateTaskAbortEvent"
)

// Poll returns the task events waiting for the delegate. An event it cannot use (an unknown
// eventType, undecodable, or without a task id) is logged and skipped so that the others still
// get through; only an answer that is not a JSON object with a list (or null) of events is an
// error.
//
// The answer is read into a buffer kept between polls and decoded in one pass that keeps only
// what an Event holds (see decodeEvents): with thousands of tasks queued, an answer is megabytes
// and arrives every poll interval.
func (c *Client) Poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	op := "poll task events of delegate " + delegateID
	if err := requireID(op, "delegate id", delegateID); err != nil {
		return nil, err
	}
	buf := answerBuffers.Get().(*[]byte)
	defer putAnswerBuffer(buf)
	status, raw, err := c.doInto(ctx, op, (*buf)[:0], func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.GetTaskEvents(ctx, delegateID, &gen.GetTaskEventsParams{AccountId: c.account}, edit)
	})
	if err != nil {
		return nil, err
	}
	*buf = raw
	if isEmpty(raw) {
		return nil, nil
	}
	events, skipped, err := decodeEvents(raw)
	if err != nil {
		return nil, c.undecodable(op, status, raw, err)
	}
	for _, sk := range skipped {
		c.log.Warn("skipping a task event the runner cannot use", "delegate_id", delegateID, "index", sk.index, "error", sk.err)
	}
	return events, nil
}

// answerBuffers holds the buffers task-events answers are read into; Poll copies out what it
// keeps, so a buffer serves the next poll.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxKeptAnswer bounds the buffers kept for the next poll, so that one huge answer does not hold
// its memory for good.
const maxKeptAnswer = 8 << 20

func putAnswerBuffer(buf *[]byte) {
	if cap(*buf) > maxKeptAnswer {
		*buf = nil
	}
	answerBuffers.Put(buf)
}

// Acquire claims the task for the delegate. When another delegate won it (the manager answers
// 204, an empty body or 409) the error matches errs.ErrAcquireConflict.
func (c *Client) Acquire(ctx context.Context, delegateID, taskID string) (*manager.Task, error) {
	op := "acquire task " + taskID
	if err := requireID(op, "delegate id", delegateID); err != nil {
		return nil, err
	}
	if err := requireID(op, "task id", taskID); err != nil {
		return nil, err
	}
	target := acquireURL(c.api.Server, c.account, delegateID, taskID)
	status, raw, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, target, nil)
		if err != nil {
			return nil, err
		}
		if err := edit(ctx, req); err != nil {
			return nil, err
		}
		return c.http.Do(req)
	})
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent || isEmpty(raw) {
		return nil, &errs.Error{Code: errs.CodeAcquireConflict, Op: op, Status: status,
			Message: "the manager gave the task to another delegate"}
	}
	var t gen.Task
	if err := c.decode(op, status, raw, &t); err != nil {
		return nil, err
	}
	if t.Id == "" || t.Type == "" {
		return nil, malformed(op, status, "the task has no id or no type")
	}
	task := &manager.Task{
		Envelope: tasks.Envelope{
			ID:             t.Id,
			Type:           t.Type,
			Timeout:        timeoutOf(t.Timeout),
			Async:          deref(t.Async),
			RunnerResponse: deref(t.RunnerResponse),
			AcquiredAt:     c.now(),
		},
		Raw: raw,
	}
	if t.Data != nil {
		task.Data = *t.Data
	}
	if t.Capabilities != nil {
		task.Capabilities = *t.Capabilities
	}
	if l := t.Logging; l != nil {
		task.Logging = tasks.Logging{Token: deref(l.Token), Abstractions: deref(l.Abstractions)}
	}
	if d := t.Delegate; d != nil {
		task.Delegate = tasks.Delegate{ID: deref(d.Id), InstanceID: deref(d.InstanceId), Token: deref(d.Token)}
	}
	return task, nil
}

// acquireURL is the acquire call's URL exactly as the generated client writes it (server ends
// with a slash, path parameters path-escaped, query parameters query-escaped in the contract's
// order), without what it costs there per call: parsing the server's URL and then the path
// against it, styling each parameter through reflection, and splitting and joining the query.
// It is built once per task, and the profile of a runner at one worker showed the generated
// path at 6 % of the runner's CPU.
func acquireURL(server, account, delegateID, taskID string) string {
	return server + "api/agent/v2/delegates/" + url.PathEscape(delegateID) + "/tasks/" + url.PathEscape(taskID) +
		"/acquire?accountId=" + url.QueryEscape(account) + "&delegateInstanceId=" + url.QueryEscape(delegateID)
}

// timeoutOf converts the task's timeout in seconds. Zero, negative and absurdly large values
// (beyond what a Duration holds) all mean no limit.
func timeoutOf(secs *int64) time.Duration {
	if secs == nil || *secs <= 0 || *secs > math.MaxInt64/int64(time.Second) {
		return 0
	}
	return time.Duration(*secs) * time.Second
}
