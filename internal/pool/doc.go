// Package pool is the runner's bounded executor: a fixed number of slots, reserved before work is
// fetched and released when the work is done, so the runner never asks the manager for more tasks
// than it can run at once.
package pool
