// Package reporter delivers task results to the manager and does not let go of one until the
// manager has it: each result is spooled to disk first, sent, retried with capped exponential
// backoff while the failure is retryable and the result has not expired, and removed from the
// spool only when the manager acknowledged it or refused it for good. A task's updates, sent by
// its handler while it runs, go the same way, and a task's results reach the manager one after
// the other in the order they were handed over (those kept from an earlier run by update number,
// the outcome last).
package reporter
