package contact

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/google/wire"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
)

// ProviderSet provides the runtime's one Signal.
var ProviderSet = wire.NewSet(NewSignal)

// Signal calls its listeners each time it is raised. It is safe for concurrent use; raising it
// costs an atomic load and the listeners' own cost, so it can be raised for every call.
type Signal struct {
	mu        sync.Mutex // serializes Listen
	listeners atomic.Pointer[[]func()]
}

// NewSignal returns a Signal without listeners.
func NewSignal() *Signal { return &Signal{} }

// Listen adds f to the functions called at each Raise. f runs on the raising goroutine, in the
// middle of a manager call, so it must return at once without blocking.
func (s *Signal) Listen(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next []func()
	if cur := s.listeners.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, f)
	s.listeners.Store(&next)
}

// Raise calls every listener.
func (s *Signal) Raise() {
	if ls := s.listeners.Load(); ls != nil {
		for _, f := range *ls {
			f()
		}
	}
}

// Answered reports whether a call that ended with err shows the manager at work: the call
// succeeded, or the manager refused an acquire because another runner holds the task. An error
// answer (5xx, 429), an unreadable one, a lost answer or a timeout does not, and neither does a
// 404, which a proxy in front of a missing manager gives as readily as the manager itself.
func Answered(err error) bool {
	return err == nil || errors.Is(err, errs.ErrAcquireConflict)
}

// Watch returns m with s raised after every call whose outcome Answered accepts. Answers and
// errors pass through unchanged.
//
// A manager that offers tasks one long poll at a time (manager.Offerer) keeps that capability, its
// answered offers raising s too.
func Watch(m manager.Manager, s *Signal) manager.Manager {
	w := &watched{next: m, signal: s}
	if o, ok := m.(manager.Offerer); ok {
		return &watchedOfferer{watched: w, offerer: o}
	}
	return w
}

// watchedOfferer is a watched manager that offers tasks by long polls.
type watchedOfferer struct {
	*watched
	offerer manager.Offerer
}

var _ manager.Offerer = (*watchedOfferer)(nil)

func (w *watchedOfferer) Offer(ctx context.Context, delegateID string) (*manager.Event, error) {
	ev, err := w.offerer.Offer(ctx, delegateID)
	w.heard(err)
	return ev, err
}

type watched struct {
	next   manager.Manager
	signal *Signal
}

var _ manager.Manager = (*watched)(nil)

func (w *watched) heard(err error) {
	if Answered(err) {
		w.signal.Raise()
	}
}

func (w *watched) Register(ctx context.Context, d manager.Delegate) (manager.Registration, error) {
	reg, err := w.next.Register(ctx, d)
	w.heard(err)
	return reg, err
}

func (w *watched) Heartbeat(ctx context.Context, delegateID string, d manager.Delegate) (manager.Heartbeat, error) {
	hb, err := w.next.Heartbeat(ctx, delegateID, d)
	w.heard(err)
	return hb, err
}

func (w *watched) Poll(ctx context.Context, delegateID string) ([]manager.Event, error) {
	events, err := w.next.Poll(ctx, delegateID)
	w.heard(err)
	return events, err
}

func (w *watched) Acquire(ctx context.Context, delegateID, taskID string) (*manager.Task, error) {
	task, err := w.next.Acquire(ctx, delegateID, taskID)
	w.heard(err)
	return task, err
}

func (w *watched) Report(ctx context.Context, r manager.Result) error {
	err := w.next.Report(ctx, r)
	w.heard(err)
	return err
}
