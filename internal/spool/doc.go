// Package spool keeps task results on disk until the manager has them. Results go into an
// append-only log of checksummed records in the spool directory: a result is appended before the
// runner first tries to deliver it, and fdatasynced either at once (Put; results stored at the same
// moment share one write and one fdatasync) or later, when asked (Write, then Sync or SyncAll,
// and Close), so that a result delivered within moments costs no fsync; a delete record is
// appended, without an fsync, once the manager acknowledged it. A crash of the process or a long
// manager outage loses nothing: the next start reads the log back, cuts off the torn end of an
// interrupted write, sets damaged records aside, and delivers what is still live. Segments of the
// log are deleted, oldest first, once nothing in them or before them is live; the few results that
// stay undelivered for long are copied forward so that they do not keep every newer segment on
// disk.
package spool
