package mockmanager_test

import (
	"fmt"
	"net/http"

	"github.com/dlite-dev/dlite/mockmanager"
)

// A test queues a Drone build, lets a runner take it (here a bare request with the RPC secret),
// cancels it and reads back what the server holds and how often each route was called.
func ExampleDroneServer() {
	ds, err := mockmanager.NewDrone(mockmanager.DroneOptions{Secret: "rpc-secret"})
	if err != nil {
		panic(err)
	}
	srv, err := ds.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	b, err := ds.QueueBuild(mockmanager.NewBuild{
		Yaml:   "kind: pipeline\ntype: docker\nsteps:\n- name: a\n  image: alpine\n",
		Stages: []mockmanager.NewStage{{Name: "default"}},
	})
	if err != nil {
		panic(err)
	}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/rpc/v2/stage/%d?machine=runner-1", srv.URL(), b.Stages[0].Stage.Id), nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("X-Drone-Token", "rpc-secret")
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		panic(err)
	}
	_ = resp.Body.Close()
	fmt.Println("accept:", resp.StatusCode)

	cancelled, err := ds.CancelBuild(b.Build.Id)
	if err != nil {
		panic(err)
	}
	fmt.Println("build:", cancelled.Build.Status, "stage:", cancelled.Stages[0].Stage.Status, "machine:", cancelled.Stages[0].Stage.Machine)
	fmt.Println(ds.Requests())
	// Output:
	// accept: 200
	// build: killed stage: skipped machine: runner-1
	// [{1 AcceptStage 200}]
}
