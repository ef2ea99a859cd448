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
// It models how the manager routes a CI stage: the answer to a stage's initialize task pins the
// stage's execute and cleanup tasks to the delegate id in its delegate_meta_info, and a runner that
// registers again from the same host (same host name, name, type and next-gen flag) gets its
// delegate id back. The second rule is inferred from the manager's public changes, not observed.
package mockmanager
