// Package httpapi is a runner's HTTP endpoint for the people and systems that operate it: /healthz
// and /readyz for probes, /metrics for Prometheus, and a live status page (/ with /status.json)
// showing registration, slots and the running and recently finished tasks. The page is embedded in
// the binary and loads nothing from elsewhere. Everything but the probes sits behind HTTP basic
// auth when credentials are configured, which they must be off loopback.
package httpapi
