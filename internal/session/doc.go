// Package session keeps the runner registered with its manager: it registers with backoff, sends
// heartbeats in their own loop, and registers again when the manager forgets or deletes the
// delegate or stops answering. Other parts of the runner read the current delegate id and whether
// the manager lets it take work from here.
package session
