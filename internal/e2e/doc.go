// Package e2e holds the end-to-end tests of the runner: runners built as users build them
// (dlite.New with the built-in tasks or legacy handlers) run against the mock manager over real
// HTTP, with real processes for shell tasks, sometimes through a proxy that records or changes
// what passes between them. The CI stage tests run the dlite binary itself, so a runner can be
// killed with SIGKILL and restarted between two steps, and check what a stage left in Docker and
// on disk. Its code is all in its tests; it builds into nothing.
package e2e
