package pool

import (
	"context"
	"sync"
)

// Pool is a set of slots that tasks run in. Reserve slots with TryReserve before fetching work, then
// either run the work in a reserved slot with Go or give the slot back with Release.
type Pool struct {
	mu    sync.Mutex
	size  int
	used  int
	idle  chan struct{} // closed while no slot is in use
	freed chan struct{} // a token is left here whenever a slot becomes free
}

// New returns a pool with size slots (at least one).
func New(size int) *Pool {
	if size < 1 {
		size = 1
	}
	idle := make(chan struct{})
	close(idle)
	return &Pool{size: size, idle: idle, freed: make(chan struct{}, 1)}
}

// Size returns the number of slots.
func (p *Pool) Size() int { return p.size }

// Free returns the number of slots neither running nor reserved.
func (p *Pool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size - p.used
}

// InUse returns the number of slots running or reserved.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// TryReserve reserves up to n free slots without waiting and returns how many it reserved.
func (p *Pool) TryReserve(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = min(n, p.size-p.used)
	if n <= 0 {
		return 0
	}
	if p.used == 0 {
		p.idle = make(chan struct{})
	}
	p.used += n
	return n
}

// Release gives back one reserved slot.
func (p *Pool) Release() {
	p.mu.Lock()
	if p.used == 0 {
		p.mu.Unlock()
		panic("pool: Release without a reserved slot")
	}
	p.used--
	if p.used == 0 {
		close(p.idle)
	}
	p.mu.Unlock()
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// Go runs fn in its own goroutine in a slot the caller reserved, and releases the slot when fn
// returns.
func (p *Pool) Go(fn func()) {
	go func() {
		defer p.Release()
		fn()
	}()
}

// Freed returns a channel that receives after a slot is released. Releases that happen while
// nobody listens are coalesced into one.
func (p *Pool) Freed() <-chan struct{} { return p.freed }

// Wait blocks until no slot is in use or ctx ends, and returns ctx.Err() in the latter case.
func (p *Pool) Wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
