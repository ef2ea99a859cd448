package poller

import (
	"sync"
	"time"

	"github.com/dlite-dev/dlite/internal/manager"
)

// candidates holds the runnable task events of the latest answer that no slot has taken yet, in
// the answer's order, so that slots freed before the next poll acquire them without asking the
// manager for its whole queue again. Each answer replaces the set: the manager lists what is still
// queued, so an event it no longer lists went to another runner or was withdrawn. The set is
// bounded by max and dropped whole once it is older than ttl, since the longer an event waits the
// likelier another runner took its task. Its methods are safe for concurrent use.
type candidates struct {
	max int
	ttl time.Duration

	mu sync.Mutex
	// events are the candidates in the answer's order; taken ones before next, and withdrawn ones
	// (an abort in the same answer) with an empty TaskID.
	events   []manager.Event
	next     int
	listedAt time.Time
	// delegate is the delegate id the answer was for: the one to acquire its events as.
	delegate string
	// index maps a candidate's task id to its place in events (-1 for an aborted task) while an
	// answer is read in; it is kept between answers only to reuse its memory.
	index map[string]int
}

func newCandidates(maxLen int, ttl time.Duration) *candidates {
	// The set grows with the answers rather than to max at once: max is a bound, and most answers
	// list far fewer.
	return &candidates{max: maxLen, ttl: ttl, index: map[string]int{}}
}

// offer replaces the candidates with the runnable events of an answer to delegate received at
// now. Abort events
// go to abort and withdraw the candidate they name. Events of unsupported types, repeated events and
// those beyond max are left out. It returns how many runnable events were left out for want of
// room. Its cost is one map look-up per event until the set is full, then one field test per
// event, whatever the answer's length.
func (c *candidates) offer(delegate string, events []manager.Event, now time.Time, supports func(string) bool, abort func(string)) (overflow int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.events)
	c.events = c.events[:0]
	c.next = 0
	c.listedAt = now
	c.delegate = delegate
	clear(c.index)
	for _, ev := range events {
		if ev.Abort {
			abort(ev.TaskID)
			if i, ok := c.index[ev.TaskID]; ok && i >= 0 {
				c.events[i].TaskID = ""
			}
			// A task event for it later in the answer is then taken for a repeat.
			c.index[ev.TaskID] = -1
			continue
		}
		if len(c.events) >= c.max {
			overflow++
			continue
		}
		if _, dup := c.index[ev.TaskID]; dup || !supports(ev.TaskType) {
			continue
		}
		c.index[ev.TaskID] = len(c.events)
		c.events = append(c.events, ev)
	}
	return overflow
}

// take returns the next candidate and the delegate id to acquire it as, or false when there is
// none left or the set has grown stale.
func (c *candidates) take(now time.Time) (ev manager.Event, delegate string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.listedAt) > c.ttl {
		c.dropLocked()
		return manager.Event{}, "", false
	}
	for c.next < len(c.events) {
		ev := c.events[c.next]
		c.events[c.next] = manager.Event{}
		c.next++
		if ev.TaskID != "" {
			return ev, c.delegate, true
		}
	}
	return manager.Event{}, "", false
}

// len returns how many candidates are left, stale ones included.
func (c *candidates) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events) - c.next
}

// drop forgets every candidate (the delegate they were listed for is not the current one).
func (c *candidates) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
}

func (c *candidates) dropLocked() {
	clear(c.events[c.next:])
	c.events = c.events[:0]
	c.next = 0
}
