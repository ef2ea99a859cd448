// Package reporter delivers task results to the manager and does not let go of one until the
// manager has it: each result is spooled to disk first, sent, retried with capped exponential
// backoff while the failure is retryable and the result has not expired, and removed from the
// spool only when the manager acknowledged it or refused it for good.
package reporter
