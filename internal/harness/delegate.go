package harness

import (
	"context"
	"net/http"
	"strings"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/internal/manager"
)

// The fixed parts of every DelegateParams a dlite runner sends.
const (
	delegateType = "DOCKER"
	sequenceNum  = int64(1)
)

// Register announces d and returns the id the manager gave it. When d.Capacity is positive it
// then records the capacity; a failure there fails the registration, so the caller retries both.
func (c *Client) Register(ctx context.Context, d manager.Delegate) (manager.Registration, error) {
	op := strings.TrimSpace("register delegate " + d.Name)
	body := c.delegateParams(d)
	status, raw, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.RegisterDelegate(ctx, &gen.RegisterDelegateParams{AccountId: c.account}, body, edit)
	})
	if err != nil {
		return manager.Registration{}, err
	}
	var out gen.RegisterRestResponse
	if err := c.decode(op, status, raw, &out); err != nil {
		return manager.Registration{}, err
	}
	if out.Resource == nil || out.Resource.DelegateId == nil || *out.Resource.DelegateId == "" {
		return manager.Registration{}, malformed(op, status, "the answer carries no delegateId")
	}
	reg := manager.Registration{DelegateID: *out.Resource.DelegateId}
	if out.Resource.Action != nil {
		reg.Action = string(*out.Resource.Action)
	}
	if d.Capacity > 0 {
		if err := c.registerCapacity(ctx, reg.DelegateID, d.Capacity); err != nil {
			return manager.Registration{}, err
		}
	}
	return reg, nil
}

func (c *Client) registerCapacity(ctx context.Context, delegateID string, capacity int) error {
	op := "record capacity of delegate " + delegateID
	body := gen.DelegateCapacity{MaximumNumberOfBuilds: capacity}
	_, _, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.RegisterCapacity(ctx, delegateID, &gen.RegisterCapacityParams{AccountId: c.account}, body, edit)
	})
	return err
}

// Heartbeat tells the manager the delegate is alive and which tasks it runs, and returns the
// status the manager holds for it: manager.StatusUnknown when the manager answers without a
// delegate.
func (c *Client) Heartbeat(ctx context.Context, delegateID string, d manager.Delegate) (manager.Heartbeat, error) {
	op := "heartbeat of delegate " + delegateID
	if err := requireID(op, "delegate id", delegateID); err != nil {
		return manager.Heartbeat{}, err
	}
	body := c.delegateParams(d)
	body.DelegateId = new(delegateID)
	if len(d.Running) > 0 {
		body.CurrentlyExecutingDelegateTasks = &d.Running
	}
	status, raw, err := c.do(ctx, op, func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error) {
		return c.api.Heartbeat(ctx, &gen.HeartbeatParams{AccountId: c.account}, body, edit)
	})
	if err != nil {
		return manager.Heartbeat{}, err
	}
	var out gen.HeartbeatRestResponse
	if err := c.decode(op, status, raw, &out); err != nil {
		return manager.Heartbeat{}, err
	}
	hb := manager.Heartbeat{Status: manager.StatusUnknown}
	if r := out.Resource; r != nil {
		hb.DelegateID = deref(r.DelegateId)
		if r.Status != nil && *r.Status != "" {
			hb.Status = manager.Status(*r.Status)
		}
	}
	return hb, nil
}

// delegateParams is what the runner says of itself, with the empty optional fields left out.
// The token is the runner's per-process random token: the account secret never leaves the
// process except as the key of the Delegate token.
func (c *Client) delegateParams(d manager.Delegate) gen.DelegateParams {
	at := d.At
	if at.IsZero() {
		at = c.now()
	}
	return gen.DelegateParams{
		AccountId:           new(c.account),
		DelegateName:        nonEmpty(d.Name),
		DelegateRandomToken: nonEmpty(d.Token),
		LastHeartBeat:       new(at.UnixMilli()),
		DelegateType:        new(delegateType),
		Ng:                  new(true),
		PollingModeEnabled:  new(true),
		HostName:            nonEmpty(d.HostName),
		SequenceNum:         new(sequenceNum),
		Ip:                  nonEmpty(d.IP),
		SupportedTaskTypes:  nonEmptySlice(d.TaskTypes),
		Tags:                nonEmptySlice(d.Tags),
		HeartbeatAsObject:   new(true),
	}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonEmptySlice(s []string) *[]string {
	if len(s) == 0 {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// requireID refuses an empty path or query id: sent as is, it would address another endpoint.
func requireID(op, what, id string) error {
	if id == "" {
		return errs.Newf(errs.CodeInvalidConfig, op, "no %s given", what)
	}
	return nil
}
