// Package poller asks the manager for work only when the runner can run it: it reserves free
// slots before polling, acquires at most as many tasks as it reserved, never acquires a task it
// cannot run or already holds, passes abort events to the executor, and polls again at once while
// a poll keeps filling slots.
package poller
