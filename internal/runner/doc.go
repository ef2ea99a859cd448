// Package runner ties the runtime together and owns its lifecycle: register, then heartbeat and
// poll until told to stop; on a graceful shutdown stop polling at once, let running tasks finish
// within the grace period while heartbeats go on, cancel what is left, and hand every result to the
// reporter before returning.
package runner
