//go:build !race

package reliability_test

// raceEnabled builds the runner binary with the race detector when the tests run with it.
const raceEnabled = false
