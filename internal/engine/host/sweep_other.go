//go:build !linux

package host

import "context"

// labels select the processes of a stage, or of one step of it, started by this runner.
type labels struct{ stage, step string }

// sweep finds leftovers of a dead runner process through /proc, which only Linux has; elsewhere
// only the processes this backend started are stopped.
func (b *Backend) sweep(context.Context, labels) error { return nil }
