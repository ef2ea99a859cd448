package drone

import (
	"context"
	"fmt"
	"net/http"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// Ping checks that the server is up and accepts the secret. A 401 or 403 is an error matching
// errs.ErrUnauthorized.
func (c *Client) Ping(ctx context.Context) error {
	res, err := c.api.PingWithResponse(ctx)
	return c.check(ctx, "ping Drone server", res, err)
}

// Request asks for a stage that matches f, waiting up to the server's long-poll time (30 s). It
// returns ok false, and no error, when the poll ended with no work: a 204, or a stage with id 0.
func (c *Client) Request(ctx context.Context, f Filter) (stage Stage, ok bool, err error) {
	const op = "request stage"
	res, err := c.api.RequestStageWithResponse(ctx, f)
	if err := c.check(ctx, op, res, err); err != nil {
		return Stage{}, false, err
	}
	if res.StatusCode() == http.StatusNoContent {
		return Stage{}, false, nil
	}
	stage, err = decoded(op, res.StatusCode(), res.Body, res.JSON200)
	if err != nil || stage.Id == 0 {
		return Stage{}, false, err
	}
	return stage, true, nil
}

// Accept takes the stage for the runner named machine and returns it as saved (machine set,
// version raised). A stage another runner took first is an error matching ErrOptimisticLock.
func (c *Client) Accept(ctx context.Context, stageID int64, machine string) (Stage, error) {
	op := fmt.Sprintf("accept stage %d", stageID)
	res, err := c.api.AcceptStageWithResponse(ctx, stageID, &gen.AcceptStageParams{Machine: machine})
	if err := c.check(ctx, op, res, err); err != nil {
		return Stage{}, err
	}
	return decoded(op, res.StatusCode(), res.Body, res.JSON200)
}

// Detail returns everything needed to run the stage: repository, build, stage, YAML, secrets,
// system and clone credentials.
func (c *Client) Detail(ctx context.Context, stageID int64) (Details, error) {
	op := fmt.Sprintf("read details of stage %d", stageID)
	res, err := c.api.GetStageDetailsWithResponse(ctx, stageID)
	if err := c.check(ctx, op, res, err); err != nil {
		return Details{}, err
	}
	return decoded(op, res.StatusCode(), res.Body, res.JSON200)
}

// UpdateStage saves the stage (the server finds it by stage.Id) and returns it as saved. With
// status pending or running its steps are inserted and come back with ids and version 1;
// with any other status they are updated. A version that is not the stored one is an error
// matching ErrOptimisticLock.
func (c *Client) UpdateStage(ctx context.Context, stage Stage) (Stage, error) {
	op := fmt.Sprintf("update stage %d to %s", stage.Id, stage.Status)
	res, err := c.api.UpdateStageWithResponse(ctx, stage.Id, stage)
	if err := c.check(ctx, op, res, err); err != nil {
		return Stage{}, err
	}
	return decoded(op, res.StatusCode(), res.Body, res.JSON200)
}

// UpdateStep saves the step (the server finds it by step.Id) and returns it as saved. Status
// pending or running opens the step's live log stream; any other status closes it. A version
// that is not the stored one is an error matching ErrOptimisticLock.
func (c *Client) UpdateStep(ctx context.Context, step Step) (Step, error) {
	op := fmt.Sprintf("update step %d to %s", step.Id, step.Status)
	res, err := c.api.UpdateStepWithResponse(ctx, step.Id, step)
	if err := c.check(ctx, op, res, err); err != nil {
		return Step{}, err
	}
	return decoded(op, res.StatusCode(), res.Body, res.JSON200)
}

// Watch waits up to the server's long-poll time (30 s) for the build to be cancelled. It returns
// true when it was, and false, with no error, when the poll ended without a cancel. A build that
// ends normally never reports true: stop watching by ending ctx.
func (c *Client) Watch(ctx context.Context, buildID int64) (cancelled bool, err error) {
	res, err := c.api.WatchBuildWithResponse(ctx, buildID)
	if err := c.check(ctx, fmt.Sprintf("watch build %d", buildID), res, err); err != nil {
		return false, err
	}
	return res.StatusCode() == http.StatusOK, nil
}

// Batch appends lines to the step's live log stream. The server has a stream only while the
// step is running: before and after, the call fails with the server's "stream: not found".
func (c *Client) Batch(ctx context.Context, stepID int64, lines []Line) error {
	if lines == nil {
		lines = []Line{}
	}
	res, err := c.api.BatchLogsWithResponse(ctx, stepID, lines)
	return c.check(ctx, fmt.Sprintf("send %d log lines of step %d", len(lines), stepID), res, err)
}

// Upload stores the step's whole log. The server keeps the first upload: a second one for the
// same step fails with a permanent error.
func (c *Client) Upload(ctx context.Context, stepID int64, lines []Line) error {
	if lines == nil {
		lines = []Line{}
	}
	res, err := c.api.UploadLogsWithResponse(ctx, stepID, lines)
	return c.check(ctx, fmt.Sprintf("upload log of step %d", stepID), res, err)
}

// UploadCard stores the step's card. A server that predates cards gives an error matching both
// errs.ErrNotFound and ErrCardsUnsupported.
func (c *Client) UploadCard(ctx context.Context, stepID int64, card CardInput) error {
	res, err := c.api.UploadCardWithResponse(ctx, stepID, card)
	err = c.check(ctx, fmt.Sprintf("upload card of step %d", stepID), res, err)
	if err != nil && res != nil && res.StatusCode() == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrCardsUnsupported, err)
	}
	return err
}
