package mockmanager

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"
)

// DroneTestServer is a DroneServer behind an httptest server that is closed when the test ends.
// Its methods are the DroneServer's: QueueBuild, CancelBuild, WaitBuild, Requests and so on.
type DroneTestServer struct {
	*DroneServer
	// URL is the base URL of the runner RPC and the admin API, such as "http://127.0.0.1:41234";
	// it is what runners take as "<DRONE_RPC_PROTO>://<DRONE_RPC_HOST>".
	URL string
	// HTTP is the underlying httptest server.
	HTTP *httptest.Server
}

// NewDroneTest starts a mock Drone server for the test t and registers its shutdown with
// t.Cleanup. Empty options are filled for tests: a random Secret (read it back with Secret), a
// PollTimeout of 2 s and a Logger writing to the test's output. A test reads:
//
//	ds := mockmanager.NewDroneTest(t, mockmanager.DroneOptions{})
//	b, err := ds.QueueBuild(mockmanager.NewBuild{Yaml: pipeline, Stages: []mockmanager.NewStage{{Name: "default"}}})
//	require.NoError(t, err)
//	// start the runner under test against ds.URL with ds.Secret()
//	done, err := ds.WaitBuild(ctx, b.Build.Id)
func NewDroneTest(t testing.TB, opts DroneOptions) *DroneTestServer {
	t.Helper()
	if opts.Secret == "" {
		opts.Secret = randomHex(16)
	}
	if opts.PollTimeout == 0 {
		opts.PollTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	s, err := NewDrone(opts)
	if err != nil {
		t.Fatalf("start mock Drone server: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &DroneTestServer{DroneServer: s, URL: hs.URL, HTTP: hs}
}
