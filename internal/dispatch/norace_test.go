//go:build !race

package dispatch_test

// raceEnabled is set under the race detector, whose instrumentation makes every frame larger.
const raceEnabled = false
