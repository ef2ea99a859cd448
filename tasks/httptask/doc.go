// Package httptask runs HTTP_TASK: one HTTP request described by the task's data, whose response
// (status, headers and the first 64 KiB of the body) is the task's output. Any 2xx status is
// success unless the task lists the statuses that are; another status fails the task but still
// returns the response. Transport failures and timeouts fail the task with a message naming the
// method and URL. The request is bounded by the task's context and, when the task gives one, by
// its own timeoutSeconds; request headers are never logged, since they usually carry credentials.
package httptask
