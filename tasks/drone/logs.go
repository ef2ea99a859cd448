package drone

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlite-dev/dlite/internal/drone"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// LogKind is the log stream kind of Drone stages in the engine's log registry: the key of a
// step's stream is "<stage id>/<step number>".
const LogKind = "drone"

const (
	// flushEvery is how long new log lines wait before a batch is sent, as Drone runners do.
	flushEvery = time.Second
	// openWait bounds how long a batch waits for the server to take its step's start.
	openWait = 5 * time.Second
)

// Batcher sends a step's live log lines to the Drone server.
type Batcher interface {
	Batch(ctx context.Context, stepID int64, lines []drone.Line) error
}

// StepOpener finds the id of a step the Drone server has started, waiting for its start to be
// delivered (the server keeps a step's live log stream only while the step runs there).
type StepOpener interface {
	OpenStep(ctx context.Context, stage int64, number int) (int64, error)
}

// Logs is the log transport of Drone steps, and its factory: lines go to the server in batches
// while the step runs, and each step's full history is kept for the stage's answer, whose delivery
// is durable, instead of being uploaded by the stream. It is safe for concurrent use.
type Logs struct {
	batcher Batcher
	steps   StepOpener
	mu      sync.Mutex
	opened  map[string]time.Time
	history map[string][]drone.Line
}

var (
	_ logstream.Factory   = (*Logs)(nil)
	_ logstream.Transport = (*Logs)(nil)
)

// NewLogs returns the transport of Drone step logs, sent in batches over b to the steps o finds.
func NewLogs(b Batcher, o StepOpener) *Logs {
	return &Logs{batcher: b, steps: o, opened: map[string]time.Time{}, history: map[string][]drone.Line{}}
}

// Transport answers the transport for the stages of kind LogKind.
func (l *Logs) Transport(logstream.Config) (logstream.Transport, logstream.Options, error) {
	return l, logstream.Options{FlushEvery: flushEvery}, nil
}

// Open notes when the step's log starts: Drone lines carry their time from there.
func (l *Logs) Open(_ context.Context, key string) error {
	if _, _, err := parseLogKey(key); err != nil {
		return err
	}
	l.mu.Lock()
	l.opened[key] = time.Now()
	l.mu.Unlock()
	return nil
}

// Write sends lines as one batch to the step's live log, once the server has taken the step's
// start; lines of a step whose start it has not taken within openWait are not sent live (they are
// still in the step's full log).
func (l *Logs) Write(ctx context.Context, key string, lines []logstream.Line) error {
	stage, number, err := parseLogKey(key)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, openWait)
	id, err := l.steps.OpenStep(octx, stage, number)
	cancel()
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

// Take returns and forgets the full history of the log of step number of stage; nil when it has
// none.
func (l *Logs) Take(stage int64, number int) []drone.Line {
	key := logKey(stage, number)
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

// logKey is the key of the log stream of step number of stage.
func logKey(stage int64, number int) string {
	return strconv.FormatInt(stage, 10) + "/" + strconv.Itoa(number)
}

func parseLogKey(key string) (stage int64, number int, err error) {
	s, n, ok := strings.Cut(key, "/")
	if ok {
		stage, err = strconv.ParseInt(s, 10, 64)
		if err == nil {
			number, err = strconv.Atoi(n)
		}
	}
	if !ok || err != nil || stage <= 0 || number <= 0 {
		return 0, 0, fmt.Errorf("drone log stream %q: the key is not <stage id>/<step number>", key)
	}
	return stage, number, nil
}
