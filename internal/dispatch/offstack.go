package dispatch

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// OffStack runs f on another goroutine and returns when f has. A panic in f is raised again in
// the caller as an error that carries the panic's value and the stack it was raised on (Run's
// panic report shows both). Use it for deep work (encoding a log line, validating, decoding) on
// the goroutine of a task whose handler may wait for long.
//
// A task's goroutine waits for as long as its handler does, thousands of them at once, and Go
// does not give back the part of a goroutine's stack that a deep call made it grow while more
// than a quarter of it is still in use. Encoding the task's start line, validating its data
// against its schema and decoding the data into the generated type each go far deeper than a
// waiting handler (echo's binder and encoding/json take about 2.9 KiB of frames to decode one
// number into a struct field), so on the task's goroutine they doubled every waiting task's stack
// to 8 KiB. Run here, they leave their depth on a few goroutines that are reused while there is
// work and end after offStackIdle without any, and a waiting task keeps the stack its own frames
// need.
func OffStack(f func()) {
	j := offStackJobs.Get().(*offStackJob)
	j.f = f
	select {
	case offStackIdleWorkers <- j:
	default:
		go offStackWorker(j)
	}
	<-j.done
	p := j.panicked
	*j = offStackJob{done: j.done}
	offStackJobs.Put(j)
	if p != nil {
		panic(p)
	}
}

// offStackIdle is how long a worker of OffStack waits for more work before it ends: long enough
// to be reused within a burst of tasks, short enough that no goroutine outlives a test by much.
const offStackIdle = 20 * time.Millisecond

// offStackIdleWorkers hands a job to a worker that waits for one; unbuffered, so a send succeeds
// only when a worker is idle, and a new worker is started otherwise.
var offStackIdleWorkers = make(chan *offStackJob)

// offStackJobs keeps jobs, with their channels, for reuse.
var offStackJobs = sync.Pool{New: func() any { return &offStackJob{done: make(chan struct{}, 1)} }}

type offStackJob struct {
	f func()
	// done receives once f has returned.
	done     chan struct{}
	panicked *offStackPanic
}

func (j *offStackJob) run() {
	defer func() {
		if v := recover(); v != nil {
			j.panicked = &offStackPanic{value: v, stack: debug.Stack()}
		}
		j.done <- struct{}{}
	}()
	j.f()
}

func offStackWorker(j *offStackJob) {
	idle := time.NewTimer(offStackIdle)
	defer idle.Stop()
	for {
		j.run()
		idle.Reset(offStackIdle)
		select {
		case j = <-offStackIdleWorkers:
		case <-idle.C:
			return
		}
	}
}

// offStackPanic is a panic raised by the function OffStack ran, with the stack it was raised on.
type offStackPanic struct {
	value any
	stack []byte
}

// Error says what panicked and where, so that a panic OffStack raises again and nothing recovers
// still shows the stack it came from.
func (p *offStackPanic) Error() string { return fmt.Sprintf("%v\n\n%s", p.value, p.stack) }

// offStackBinder binds a task's data as the generated strict handlers do with echo's
// DefaultBinder, off the task's goroutine (see OffStack): they call Bind when the Echo's binder is
// not a *echo.DefaultBinder. It binds the body alone, which is what DefaultBinder.Bind does for a
// POST to a path without parameters, the only request a Dispatcher makes.
type offStackBinder struct{}

// Bind implements echo.Binder.
func (offStackBinder) Bind(i any, c echo.Context) (err error) {
	OffStack(func() { err = new(echo.DefaultBinder).BindBody(c, i) })
	return err
}
