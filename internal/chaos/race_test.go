//go:build race

package chaos_test

// raceEnabled builds the runner binaries with the race detector when the tests run with it.
const raceEnabled = true
