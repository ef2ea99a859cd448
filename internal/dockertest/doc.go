// Package dockertest is test tooling for code that runs containers: a client for the local Docker
// daemon that fails or skips a test cleanly when there is none, a small image built without any
// registry, and a listing of what a stage left behind. Only tests import it.
//
// Under CI=true a test that cannot reach a daemon fails: the CI scripts start one, so a missing
// daemon there is a broken setup, never a reason to pass. Elsewhere it is skipped with the reason.
package dockertest
