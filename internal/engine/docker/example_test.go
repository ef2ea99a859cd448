package docker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/docker"
)

// A stage's container step, from setup to cleanup. The engine makes these calls; front-ends never
// call a backend themselves.
func ExampleNew() {
	ctx := context.Background()
	b, err := docker.New(ctx, docker.Options{RunnerID: "runner-1", Logger: slog.Default()})
	if err != nil {
		fmt.Println(err) // no daemon answers: says where it looked
		return
	}
	defer b.Close()

	st := &engine.Stage{
		Spec:      engine.StageSpec{ID: "stage-1"},
		Workspace: "/var/lib/dlite/stages/stage-1/workspace",
		Shared:    "/var/lib/dlite/stages/stage-1/shared",
	}
	if err := b.SetupStage(ctx, st); err != nil { // st.Network now names the stage network
		fmt.Println(err)
		return
	}
	defer func() { _ = b.DestroyStage(ctx, st.Spec.ID) }()

	step := &engine.StepSpec{ID: "build", Image: "golang:1.26", Entrypoint: []string{"sh", "-c"}, Commands: []string{"go build ./..."}}
	p, err := b.Start(ctx, engine.Run{Stage: st, Step: step, WorkingDir: docker.WorkspacePath, Output: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	exit, err := p.Wait(ctx)
	fmt.Println(exit.Code, err)
}
