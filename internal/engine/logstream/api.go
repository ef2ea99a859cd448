package logstream

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Config is the log configuration kept in a stage record. Kind selects the transport; Settings are
// that transport's own settings, which the engine carries without reading them.
type Config struct {
	// Kind is the transport: "harness" (the Harness log service), "" or "none" (no live logs).
	Kind     string          `json:"kind,omitempty"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// Line is one log line.
type Line struct {
	// Pos is the 0-based line number within the stream.
	Pos int `json:"pos"`
	// Out is the text, with its newline unless trimmed.
	Out   string    `json:"out"`
	Level string    `json:"level,omitempty"`
	Time  time.Time `json:"time"`
}

// Transport carries one kind of log stream to its service. Every method may be called for
// several keys at once.
type Transport interface {
	// Open creates the live stream of key.
	Open(ctx context.Context, key string) error
	// Write appends lines to the live stream of key (best effort).
	Write(ctx context.Context, key string, lines []Line) error
	// Upload stores the whole history as the permanent log of key.
	Upload(ctx context.Context, key string, history []Line) error
	// Close ends the live stream of key; snapshot asks the service to keep what it has.
	Close(ctx context.Context, key string, snapshot bool) error
}

// Options shape a stream's behaviour beyond its transport.
type Options struct {
	// Secrets are replaced by asterisks in every line before it is sent.
	Secrets []string
	// MaxLine caps one line in bytes (default 71680); longer lines are cut and marked.
	MaxLine int
	// MaxHistory caps the history kept for the upload, in bytes of line JSON (default 5 MiB);
	// the oldest lines go first.
	MaxHistory int
	// FlushEvery is how long new lines wait before they are sent (default 1s).
	FlushEvery time.Duration
	// TrimNewline strips each line's trailing newline.
	TrimNewline bool
	// SkipOpen: someone else opened the stream; do not open it, and do not upload at the end
	// (the close asks for a snapshot instead).
	SkipOpen bool
	// SkipClose: leave the stream open at the end (only flush).
	SkipClose bool

	// Logger receives the writer's own warnings (a failed send, a retried upload); nil discards
	// them. It never receives log lines.
	Logger *slog.Logger
	// Attempts bounds the tries of the open and of the upload (default 5).
	Attempts int
	// RetryWait is the wait before the second try; it doubles with each try up to 30s
	// (default 500ms).
	RetryWait time.Duration
}

// Factory builds the transport and options a stage's logs use, from the stage record's Config.
type Factory interface {
	Transport(cfg Config) (Transport, Options, error)
}
