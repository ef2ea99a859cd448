package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
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
// get through; only an answer that is not JSON at all is an error.
func (c *Client) Poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	op := "poll task events of delegate " + delegateID
	if err := requireID(op, "delegate id", delegateID); err != nil {
		return nil, err
	}
	status, raw, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.GetTaskEvents(ctx, delegateID, &gen.GetTaskEventsParams{AccountId: c.account}, edit)
	})
	if err != nil {
		return nil, err
	}
	if isEmpty(raw) {
		return nil, nil
	}
	// A poll may carry a thousand events; decoding each as the generated union does (the whole
	// answer, then every event once for its eventType and once more for its fields) costs three
	// passes. One pass into the fields, which carry eventType too, is enough whenever every event
	// is well formed; an answer where one is not takes the slow path, which skips just that event.
	var fast struct {
		DelegateTaskEvents []pollEvent `json:"delegateTaskEvents"`
	}
	if json.Unmarshal(raw, &fast) == nil {
		if len(fast.DelegateTaskEvents) == 0 {
			return nil, nil
		}
		events := make([]manager.Event, 0, len(fast.DelegateTaskEvents))
		for i, pe := range fast.DelegateTaskEvents {
			fields := gen.TaskEventFields{DelegateTaskId: pe.DelegateTaskID, TaskType: &pe.TaskType, Sync: &pe.Sync}
			ev, err := eventOf(pe.EventType, fields)
			if err != nil {
				c.log.Warn("skipping a task event the runner cannot use", "delegate_id", delegateID, "index", i, "error", err)
				continue
			}
			events = append(events, ev)
		}
		return events, nil
	}
	var out gen.TaskEventsResponse
	if err := c.decode(op, status, raw, &out); err != nil {
		return nil, err
	}
	if out.DelegateTaskEvents == nil {
		return nil, nil
	}
	var events []manager.Event
	for i, raw := range *out.DelegateTaskEvents {
		ev, err := toEvent(raw)
		if err != nil {
			c.log.Warn("skipping a task event the runner cannot use", "delegate_id", delegateID, "index", i, "error", err)
			continue
		}
		events = append(events, ev)
	}
	return events, nil
}

// pollEvent is the part of a task event the runner uses, decoded in one pass. Plain fields read an
// absent or null value as the zero value, exactly as the generated pointers do once dereferenced.
type pollEvent struct {
	DelegateTaskID string `json:"delegateTaskId"`
	TaskType       string `json:"taskType"`
	Sync           bool   `json:"sync"`
	EventType      string `json:"eventType"`
}

func toEvent(raw gen.TaskEvent) (manager.Event, error) {
	kind, err := raw.Discriminator()
	if err != nil {
		return manager.Event{}, fmt.Errorf("undecodable event: %w", err)
	}
	var fields gen.TaskEventFields
	switch kind {
	case "", eventWork:
		// Managers that predate abort events send no eventType.
		fields, err = raw.AsDelegateTaskEvent()
	case eventAbort:
		fields, err = raw.AsDelegateTaskAbortEvent()
	default:
		return manager.Event{}, fmt.Errorf("unknown eventType %q", kind)
	}
	if err != nil {
		return manager.Event{}, fmt.Errorf("undecodable %s: %w", kind, err)
	}
	return eventOf(kind, fields)
}

// eventOf turns a decoded event of the given eventType into a manager.Event.
func eventOf(kind string, fields gen.TaskEventFields) (manager.Event, error) {
	var abort bool
	switch kind {
	case "", eventWork:
	case eventAbort:
		abort = true
	default:
		return manager.Event{}, fmt.Errorf("unknown eventType %q", kind)
	}
	if fields.DelegateTaskId == "" {
		return manager.Event{}, errors.New("event without delegateTaskId")
	}
	return manager.Event{
		TaskID:   fields.DelegateTaskId,
		TaskType: deref(fields.TaskType),
		Sync:     deref(fields.Sync),
		Abort:    abort,
	}, nil
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
	params := &gen.AcquireTaskParams{AccountId: c.account, DelegateInstanceId: delegateID}
	status, raw, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.AcquireTask(ctx, delegateID, taskID, params, edit)
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

// timeoutOf converts the task's timeout in seconds. Zero, negative and absurdly large values
// (beyond what a Duration holds) all mean no limit.
func timeoutOf(secs *int64) time.Duration {
	if secs == nil || *secs <= 0 || *secs > math.MaxInt64/int64(time.Second) {
		return 0
	}
	return time.Duration(*secs) * time.Second
}
