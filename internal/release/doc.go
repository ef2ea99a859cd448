// Package release builds dlite's release archives and checks what a release promises: a version
// that is valid semantic versioning, an entry for it in CHANGELOG.md, and archives that are byte
// for byte the same whenever the same commit is built with the same Go toolchain. It is a build
// tool (cmd/dlite-release, run by `make release`), kept apart from the runner's own code: nothing
// in the runtime imports it.
package release
