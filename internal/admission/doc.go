// Package admission decides whether the runner may take more work given how busy its machine is.
// A Controller samples CPU and memory use in the background (against the cgroup v2 limits when the
// runner is confined by them, else against the whole host) and keeps the latest verdict in an
// atomic value, so the poller can ask Admit before every request for work without a system call.
// While use is at or above a configured ceiling the runner holds back: running tasks continue, new
// ones wait, and the change is logged once when holding back starts and once when it ends.
package admission
