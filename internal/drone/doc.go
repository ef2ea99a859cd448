// Package drone is the Drone server's runner RPC v2 as typed calls: ping, ask for a stage, accept
// it, read its details, report the stage and its steps, watch the build for a cancel, and send
// logs and cards. It translates one wire and nothing more, over the client generated in
// gen/drone from openapi/drone.yaml. Every answer is mapped to a value or to an *errs.Error whose
// code says whether trying again can help: a 204 from a long poll is "no work" or "not
// cancelled", a 409 matches ErrOptimisticLock, a 401 or 403 says the RPC secret was refused, a
// status of 502 or more and a failed connection are retryable, and a 500 carries the server's
// text. A call is one attempt bounded by the caller's context; how often to try again belongs to
// the caller, with Backoff and the policies here as its building blocks.
package drone
