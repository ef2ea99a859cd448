// Package errs is dlite's error library: every failure that crosses a boundary (configuration,
// the manager, a task handler, the runtime) is an *Error with a Code, so callers decide with
// errors.Is against the sentinels below, or with Retryable, instead of matching message text.
//
// An *Error matches a sentinel when their codes are equal, whatever its message, operation or
// cause; it also unwraps to its cause, so errors.Is(err, context.DeadlineExceeded) keeps working.
package errs
