// Package reliability holds the end-to-end tests of what makes a runner trustworthy: nothing
// lost, nothing run twice, no hang, no secret in its output. They run the real dlite binary,
// built once per test run, as a child process against the mock manager, often through a proxy
// that takes the manager away, refuses calls with Retry-After, loses answers or garbles them,
// and kill it with SIGKILL where a crash is the point. Its code is all in its tests.
package reliability
