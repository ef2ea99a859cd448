//go:build race

package executor_test

// raceEnabled is set under the race detector, whose instrumentation makes every frame larger.
const raceEnabled = true
