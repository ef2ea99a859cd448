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
// The same server is also a mock Harness log service, under LogServicePath (Running.LogServiceURL,
// TestServer.LogServiceURL), served and validated from openapi/logservice.yaml the same way. It
// accepts the mock manager's own account (Options.AccountID) with its log token
// (Options.LogToken, random unless given; read it with Server.LogToken), in the X-Harness-Token
// header or query parameter or the x-api-key header, and refuses anything else with a 400 and an
// error_msg, as the real service does. LogConfig (or GET /admin/logs/config) gives those three as
// a stage's log_config. It keeps
// streams and permanent logs by `<accountID>/<key>`: open, write (lines for a stream that is not
// open are dropped with a 200), close (with snapshot, the stream's lines become the permanent log;
// with prefix, every open stream under the key closes), a live tail as server-sent events, uploads
// through the service (POST /blob) and through signed links (POST /blob/link/upload) that the mock
// serves itself under /storage/upload, which expire after Options.LogLinkTTL and accept only the
// key they were issued for. Fault injection does not touch it. Tests read what a step logged
// through the admin API (/admin/logs, /admin/logs/stream, /admin/logs/blob) or the Go methods
// LogKeys, Stream, StreamLines, Blob and WaitBlob; a closed stream keeps its lines until its key
// is opened again.
//
// It models how the manager routes a CI stage: the answer to a stage's initialize task pins the
// stage's execute and cleanup tasks to the delegate id in its delegate_meta_info, and a runner that
// registers again from the same host (same host name, name, type and next-gen flag) gets its
// delegate id back. The second rule is inferred from the manager's public changes, not observed.
//
// DroneServer does the same for Drone runners: it serves the Drone runner RPC v2 from
// openapi/drone.yaml with the real server's rules (the secret checked before routing, stage
// filters, long polls, accept conflicts, optimistic versions, live log streams, the gap in
// which a cancel is lost between two watches) and an admin API (openapi/drone-admin.yaml, under
// /admin/drone) to queue and cancel builds, read back stages, steps and logs, and count requests.
package mockmanager
