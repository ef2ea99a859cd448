// Package contact spreads the news that the manager answers again. The runtime's manager is
// wrapped by Watch, which raises a Signal after every call the manager answered (a registration,
// a heartbeat, a poll, an acquire, a delivered result); the parts that back off after failures
// (the poller's polls, the reporter's deliveries) listen to it and try again at once instead of
// sleeping out a backoff that grew during an outage. Error answers (5xx, 429) and calls that got
// no answer raise nothing, so a manager that keeps failing still gets the full backoff.
package contact
