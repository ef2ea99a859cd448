// Package drone is the Drone server's runner RPC v2 as typed calls: ping, ask for a stage, accept
// it, read its details, report the stage and its steps, watch the build for a cancel, and send
// logs and cards. Its Client translates one wire and nothing more, over the client generated in
// gen/drone from openapi/drone.yaml. Every answer is mapped to a value or to an *errs.Error whose
// code says whether trying again can help: a 204 from a long poll is "no work" or "not
// cancelled", a 409 matches ErrOptimisticLock, a 401 or 403 says the RPC secret was refused, a
// status of 502 or more and a failed connection are retryable, and a 500 carries the server's
// text. A call is one attempt bounded by the caller's context; how often to try again belongs to
// the caller, with Backoff and the policies here as its building blocks.
//
// Backend puts the client behind the runtime's manager port (internal/manager): a poll is a long
// poll offering one stage (manager.Offerer), an acquire accepts it with the server's version check
// and reads its details into the task's data, a registration and a heartbeat are pings, a watch
// kept open on each running build names cancelled stages on Aborts (manager.AbortSource), and
// Report delivers the Drone stage handler's answer (tasks/drone) as the final log uploads and
// stage update. Nothing above the port knows it talks to a Drone server.
package drone
