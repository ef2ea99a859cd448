// Package mockmanager is an in-process stand-in for the Harness manager's delegate API, served from
// the same contract (openapi/manager.yaml) that dlite's client is generated from, so tests of a
// runner exercise real HTTP, real Delegate tokens and real task hand-offs instead of mocked
// interfaces. Every request and every response on the manager endpoints is validated against the
// contract: a runner that sends a malformed body gets a 400 naming the field, and a mock that would
// answer outside the contract answers 500 instead. Beside the manager API it serves an admin API
// (openapi/admin.yaml, under /admin) and a matching Go API to enqueue and abort tasks, inspect
// delegates and recorded results, and inject latency, 503s and connection resets. The admin API has
// no authentication: bind the server to loopback.
//
// DroneServer does the same for Drone runners: it serves the Drone runner RPC v2 from
// openapi/drone.yaml with the real server's rules (the secret checked before routing, stage
// filters, long polls, accept conflicts, optimistic versions, live log streams, the gap in
// which a cancel is lost between two watches) and an admin API (openapi/drone-admin.yaml, under
// /admin/drone) to queue and cancel builds, read back stages, steps and logs, and count requests.
package mockmanager
