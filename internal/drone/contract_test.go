package drone_test

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/drone"
	"github.com/dlite-dev/dlite/gen/droneadmin"
)

// TestContractsAreValid: the embedded runner RPC and admin contracts load (the admin one with
// its references into the RPC one) and are valid OpenAPI 3.0 documents.
func TestContractsAreValid(t *testing.T) {
	t.Parallel()
	for name, load := range map[string]func() (*openapi3.T, error){"drone": gen.GetSpec, "drone admin": droneadmin.GetSpec} {
		spec, err := load()
		require.NoError(t, err, name)
		require.NoError(t, spec.Validate(t.Context()), name)
	}
	spec, err := gen.GetSpec()
	require.NoError(t, err)
	var ops []string
	for path, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, method+" "+path+" "+op.OperationID)
			require.Contains(t, op.Responses.Map(), "401", "%s %s: every call can be refused", method, path)
			require.Contains(t, op.Responses.Map(), "403", "%s %s: every call can be refused", method, path)
		}
	}
	require.ElementsMatch(t, []string{
		"POST /rpc/v2/ping Ping",
		"POST /rpc/v2/stage RequestStage",
		"POST /rpc/v2/stage/{stageId} AcceptStage",
		"GET /rpc/v2/stage/{stageId} GetStageDetails",
		"PUT /rpc/v2/stage/{stageId} UpdateStage",
		"PUT /rpc/v2/step/{stepId} UpdateStep",
		"POST /rpc/v2/build/{buildId}/watch WatchBuild",
		"POST /rpc/v2/step/{stepId}/logs/batch BatchLogs",
		"POST /rpc/v2/step/{stepId}/logs/upload UploadLogs",
		"POST /rpc/v2/step/{stepId}/card UploadCard",
	}, ops)
	require.Equal(t, "X-Drone-Token", spec.Components.SecuritySchemes["DroneToken"].Value.Name)
}
