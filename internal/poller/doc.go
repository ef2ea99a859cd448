// Package poller asks the manager for work and acquires it only into slots it reserved first. It
// reads each answer once: aborts act at once, and the runnable task events become a bounded set
// of candidates that free slots acquire, then and as slots free until the next answer, so a task
// costs the same however long the manager's queue is. It never acquires a task it cannot run or
// already holds, and it tries an acquire whose outcome is unknown until the manager answers it.
package poller
