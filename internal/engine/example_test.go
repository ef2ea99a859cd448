package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dlite-dev/dlite/internal/engine"
	"github.com/dlite-dev/dlite/internal/engine/host"
)

// A stage on the host: set it up, run a step that exports an output variable, clean up.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dlite-engine-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	store, err := engine.NewFileStore(filepath.Join(dir, "records"))
	if err != nil {
		panic(err)
	}
	eng, err := engine.New(engine.Options{
		Store:    store,
		Host:     host.New(host.Options{RunnerID: "example"}),
		RunnerID: "example",
		StateDir: dir,
	})
	if err != nil {
		panic(err)
	}

	if _, err := eng.Setup(ctx, engine.StageSpec{ID: "stage-1", Env: map[string]string{"NAME": "world"}}); err != nil {
		panic(err)
	}
	res, err := eng.Execute(ctx, "stage-1", engine.StepSpec{
		ID:         "greet",
		Commands:   []string{`GREETING="hello $NAME"`},
		OutputVars: []string{"GREETING"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Status, res.OutputVars["GREETING"])

	res, err = eng.Execute(ctx, "stage-1", engine.StepSpec{ID: "fail", Commands: []string{"exit 2"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Status, res.Error)

	if err := eng.Cleanup(ctx, "stage-1"); err != nil {
		panic(err)
	}
	// Output:
	// success hello world
	// failure exit status 2
}
