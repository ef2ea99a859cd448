// Package spool keeps task results on disk until the manager has them. A result is written
// atomically and fsynced before the runner first tries to deliver it, and removed only once the
// manager acknowledged it, so a crash or a long manager outage loses nothing: the next start
// delivers what the spool still holds.
package spool
