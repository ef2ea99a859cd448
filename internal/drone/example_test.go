package drone_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A runner asks for a stage, accepts it and reads its details; a second accept of the same stage
// loses with ErrOptimisticLock. The mock Drone server stands in for a real one.
func Example() {
	ds, err := mockmanager.NewDrone(mockmanager.DroneOptions{Secret: "rpc-secret", PollTimeout: time.Second})
	if err != nil {
		panic(err)
	}
	srv, err := ds.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	if _, err := ds.QueueBuild(mockmanager.NewBuild{
		Yaml:   "kind: pipeline\ntype: exec\nsteps:\n- name: a\n  commands: [echo a]\n",
		Stages: []mockmanager.NewStage{{Name: "default", Type: "exec"}},
	}); err != nil {
		panic(err)
	}

	c, err := drone.New(drone.Options{Endpoint: srv.URL(), Secret: "rpc-secret"})
	if err != nil {
		panic(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	stage, ok, err := c.Request(ctx, drone.Filter{Kind: "pipeline", Type: "exec", Os: "linux", Arch: "amd64"})
	if err != nil || !ok {
		panic(fmt.Sprint("no stage: ", err))
	}
	stage, err = c.Accept(ctx, stage.Id, "runner-1")
	if err != nil {
		panic(err)
	}
	details, err := c.Detail(ctx, stage.Id)
	if err != nil {
		panic(err)
	}
	fmt.Printf("stage %q accepted by %s, status %s\n", stage.Name, stage.Machine, stage.Status)
	fmt.Printf("%d bytes of YAML for build #%d\n", len(details.Config.Data), details.Build.Number)

	_, err = c.Accept(ctx, stage.Id, "runner-2")
	fmt.Println("second accept lost:", errors.Is(err, drone.ErrOptimisticLock))
	fmt.Println("watch says cancelled:", must(c.Watch(ctx, details.Build.Id)))
	// Output:
	// stage "default" accepted by runner-1, status pending
	// 64 bytes of YAML for build #1
	// second accept lost: true
	// watch says cancelled: false
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
