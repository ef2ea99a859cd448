package drone

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// LogKind is the log stream kind of Drone stages in the engine's log registry: the key of a
// step's stream is its id on the Drone server.
const LogKind = "drone"

// flushEvery is how long new log lines wait before a batch is sent, as Drone runners do.
const flushEvery = time.Second

// Batcher sends a step's live log lines to the Drone server.
type Batcher interface {
	Batch(ctx context.Context, stepID int64, lines []drone.Line) error
}

// Logs is the log transport of Drone steps, and its factory: lines go to the server in batches
// while the step runs, and each step's full history is kept for the stage's answer, whose delivery
// is durable, instead of being uploaded by the stream. It is safe for concurrent use.
type Logs struct {
	batcher Batcher
	mu      sync.Mutex
	opened  map[string]time.Time
	history map[string][]drone.Line
}

var (
	_ logstream.Factory   = (*Logs)(nil)
	_ logstream.Transport = (*Logs)(nil)
)

// NewLogs returns the transport of Drone step logs over b.
func NewLogs(b Batcher) *Logs {
	return &Logs{batcher: b, opened: map[string]time.Time{}, history: map[string][]drone.Line{}}
}

// Transport answers the transport for the stages of kind LogKind.
func (l *Logs) Transport(logstream.Config) (logstream.Transport, logstream.Options, error) {
	return l, logstream.Options{FlushEvery: flushEvery}, nil
}

// Open notes when the step's log starts: Drone lines carry their time from there.
func (l *Logs) Open(_ context.Context, key string) error {
	if _, err := stepID(key); err != nil {
		return err
	}
	l.mu.Lock()
	l.opened[key] = time.Now()
	l.mu.Unlock()
	return nil
}

// Write sends lines as one batch to the step's live log.
func (l *Logs) Write(ctx context.Context, key string, lines []logstream.Line) error {
	id, err := stepID(key)
	if err != nil {
		return err
	}
	return l.batcher.Batch(ctx, id, l.wire(key, lines))
}

// Upload keeps the step's full history until Take reads it.
func (l *Logs) Upload(_ context.Context, key string, history []logstream.Line) error {
	lines := l.wire(key, history)
	l.mu.Lock()
	l.history[key] = lines
	l.mu.Unlock()
	return nil
}

// Close forgets the stream's start; its history stays until Take.
func (l *Logs) Close(_ context.Context, key string, _ bool) error {
	l.mu.Lock()
	delete(l.opened, key)
	l.mu.Unlock()
	return nil
}

// Take returns and forgets the full history of step id's log; nil when it has none.
func (l *Logs) Take(id int64) []drone.Line {
	key := strconv.FormatInt(id, 10)
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.history[key]
	delete(l.history, key)
	return lines
}

// wire converts lines to Drone's form, their times in seconds since the stream opened.
func (l *Logs) wire(key string, lines []logstream.Line) []drone.Line {
	l.mu.Lock()
	opened, ok := l.opened[key]
	l.mu.Unlock()
	out := make([]drone.Line, 0, len(lines))
	for _, ln := range lines {
		if !ok {
			opened, ok = ln.Time, true
		}
		out = append(out, drone.Line{Pos: ln.Pos, Out: ln.Out, Time: max(int64(ln.Time.Sub(opened)/time.Second), 0)})
	}
	return out
}

func stepID(key string) (int64, error) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("drone log stream %q: the key is not a step id", key)
	}
	return id, nil
}
