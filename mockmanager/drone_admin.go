package mockmanager

import (
	"context"
	"errors"

	droneadmin "github.com/dlite-dev/dlite/gen/droneadmin"
)

// droneAdminAPI serves the Drone admin API (openapi/drone-admin.yaml) over the same Go methods
// tests call directly. Requests reach it validated, so a failure of those methods here is one of
// the contract's typed answers, never a 500.
type droneAdminAPI struct{ s *DroneServer }

var _ droneadmin.StrictServerInterface = droneAdminAPI{}

func droneAdminError(err error) droneadmin.Error { return droneadmin.Error{Message: err.Error()} }

func (a droneAdminAPI) QueueBuild(_ context.Context, req droneadmin.QueueBuildRequestObject) (droneadmin.QueueBuildResponseObject, error) {
	st, err := a.s.QueueBuild(*req.Body)
	if err != nil {
		return droneadmin.QueueBuild400JSONResponse{BadRequestJSONResponse: droneadmin.BadRequestJSONResponse(droneAdminError(err))}, nil
	}
	return droneadmin.QueueBuild201JSONResponse(st), nil
}

func (a droneAdminAPI) ListBuilds(context.Context, droneadmin.ListBuildsRequestObject) (droneadmin.ListBuildsResponseObject, error) {
	return droneadmin.ListBuilds200JSONResponse(a.s.Builds()), nil
}

func (a droneAdminAPI) GetBuild(_ context.Context, req droneadmin.GetBuildRequestObject) (droneadmin.GetBuildResponseObject, error) {
	st, err := a.s.Build(req.Id)
	if err != nil {
		return droneadmin.GetBuild404JSONResponse{NotFoundJSONResponse: droneadmin.NotFoundJSONResponse(droneAdminError(err))}, nil
	}
	return droneadmin.GetBuild200JSONResponse(st), nil
}

func (a droneAdminAPI) CancelBuild(_ context.Context, req droneadmin.CancelBuildRequestObject) (droneadmin.CancelBuildResponseObject, error) {
	st, err := a.s.CancelBuild(req.Id)
	switch {
	case errors.Is(err, ErrBuildDone):
		return droneadmin.CancelBuild409JSONResponse(droneAdminError(err)), nil
	case err != nil:
		return droneadmin.CancelBuild404JSONResponse{NotFoundJSONResponse: droneadmin.NotFoundJSONResponse(droneAdminError(err))}, nil
	}
	return droneadmin.CancelBuild200JSONResponse(st), nil
}

func (a droneAdminAPI) GetStage(_ context.Context, req droneadmin.GetStageRequestObject) (droneadmin.GetStageResponseObject, error) {
	st, err := a.s.Stage(req.Id)
	if err != nil {
		return droneadmin.GetStage404JSONResponse{NotFoundJSONResponse: droneadmin.NotFoundJSONResponse(droneAdminError(err))}, nil
	}
	return droneadmin.GetStage200JSONResponse(st), nil
}

func (a droneAdminAPI) GetStep(_ context.Context, req droneadmin.GetStepRequestObject) (droneadmin.GetStepResponseObject, error) {
	st, err := a.s.Step(req.Id)
	if err != nil {
		return droneadmin.GetStep404JSONResponse{NotFoundJSONResponse: droneadmin.NotFoundJSONResponse(droneAdminError(err))}, nil
	}
	return droneadmin.GetStep200JSONResponse(st), nil
}

func (a droneAdminAPI) ListRequests(context.Context, droneadmin.ListRequestsRequestObject) (droneadmin.ListRequestsResponseObject, error) {
	return droneadmin.ListRequests200JSONResponse(a.s.Requests()), nil
}
