package ci_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/dlite-dev/dlite/gen/citasks"
	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/host"
	"github.com/dlite-dev/dlite/tasks"
	"github.com/dlite-dev/dlite/tasks/ci"
)

// A stage set up, run and cleaned up on the host through the CI_DOCKER_* handlers, the way the
// runtime calls them for three tasks of the manager.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "dlite-ci-example-")
	defer os.RemoveAll(dir)
	store, _ := engine.NewFileStore(dir + "/records")
	eng, err := engine.New(engine.Options{Store: store, Host: host.New(host.Options{RunnerID: "example"}),
		RunnerID: "example", StateDir: dir + "/state"})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, _ := ci.New(ci.Options{Engine: eng, HostName: "build-host", IPAddress: "127.0.0.1"})
	ctx := tasks.WithEnvelope(context.Background(), &tasks.Envelope{Delegate: tasks.Delegate{ID: "delegate-1"}})
	data := func(s string) *json.RawMessage { m := json.RawMessage(s); return &m }

	setup, _ := h.DockerInitializeTask(ctx, citasks.DockerInitializeTaskRequestObject{Body: data(`{"id": "stage-1"}`)})
	fmt.Printf("%+v\n", *setup.(citasks.DockerInitializeTask200JSONResponse).DelegateMetaInfo)

	step, _ := h.DockerExecuteTask(ctx, citasks.DockerExecuteTaskRequestObject{Body: data(`{"stage_runtime_id": "stage-1",
		"start_step_request": {"id": "greet", "run": {"entrypoint": ["sh", "-c"], "commands": ["GREETING=hi"]}, "output_vars": ["GREETING"]}}`)})
	fmt.Println(step.(citasks.DockerExecuteTask200JSONResponse).OutputVars)

	failed, _ := h.DockerExecuteTask(ctx, citasks.DockerExecuteTaskRequestObject{Body: data(`{"stage_runtime_id": "stage-1",
		"start_step_request": {"id": "fail", "run": {"entrypoint": ["sh", "-c"], "commands": ["exit 3"]}}}`)})
	answer := failed.(citasks.DockerExecuteTask422JSONResponse).Data
	fmt.Println(answer.CommandExecutionStatus, answer.ErrorMessage)

	done, _ := h.DockerCleanupTask(ctx, citasks.DockerCleanupTaskRequestObject{Body: data(`{"correlation_id": "c", "id": "stage-1"}`)})
	fmt.Println(done.(citasks.DockerCleanupTask200JSONResponse).CommandExecutionStatus)
	// Output:
	// {HostName:build-host Id:delegate-1}
	// map[GREETING:hi]
	// FAILURE exit status 3
	// SUCCESS
}
