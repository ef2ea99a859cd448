package logstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults of Options, and the marks the writer puts into lines.
const (
	// DefaultMaxLine is the default cap of one line: 70 KiB, as the Harness log service expects.
	DefaultMaxLine = 71680
	// DefaultMaxHistory is the default cap of the history uploaded at the end: 5 MiB of line JSON.
	DefaultMaxHistory = 5 << 20
	// DefaultFlushEvery is how long new lines wait before they are sent, by default.
	DefaultFlushEvery = time.Second
	// DefaultAttempts is how often the open and the upload are tried, by default.
	DefaultAttempts = 5
	// DefaultRetryWait is the default wait before the second try of the open or the upload.
	DefaultRetryWait = 500 * time.Millisecond

	// MinSecretLen is the length below which a secret is not masked. Masking a one- or two-byte
	// value would star out every occurrence of those letters in every line, making the log
	// unreadable while hiding nothing a reader could not guess; secrets that are only white space
	// are skipped for the same reason.
	MinSecretLen = 3
	// Mask replaces every secret in a line.
	Mask = "**************"
	// TruncatedMark ends a line that was cut at the line cap.
	TruncatedMark = "... (log line truncated)"
)

const (
	maxRetryWait = 30 * time.Second
	// writeTimeout bounds one send of pending lines; callTimeout one open, upload or close.
	writeTimeout = 15 * time.Second
	callTimeout  = time.Minute
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("log stream is closed")

type openState int

const (
	opening openState = iota
	opened
	openFailed
)

// Writer is one log stream: an io.Writer that turns output into masked, capped lines, sends them
// live about every FlushEvery (best effort) and uploads the kept history when it is closed. It is
// safe for concurrent use.
type Writer struct {
	t       Transport
	key     string
	opts    Options
	log     *slog.Logger
	masker  *strings.Replacer
	secrets []string // longest first
	// headLimit is how much of a line is kept while waiting for its newline: the line cap plus
	// the longest secret, so a secret that starts below the cap is still seen whole.
	headLimit int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	mu           sync.Mutex
	partial      []byte
	partialCut   bool // bytes of the partial line were dropped past headLimit
	pos          int
	state        openState
	pending      []Line
	pendingBytes int
	history      []Line
	historyBytes int
	closed       bool
	warnedWrite  bool

	// sendMu keeps sends in line order.
	sendMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// NewWriter starts the log stream key on t: unless opts.SkipOpen, it opens the stream in the
// background (retried briefly; when opening fails, the live stream stops but the history is
// still uploaded at Close). ctx bounds the live stream; Close must be called to end it. A nil t
// keeps the lines and sends them nowhere.
func NewWriter(ctx context.Context, t Transport, key string, opts Options) *Writer {
	opts = withDefaults(opts)
	if t == nil {
		t = discard{}
	}
	w := &Writer{
		t:    t,
		key:  key,
		opts: opts,
		log:  opts.Logger,
		kick: make(chan struct{}, 1),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("logKey", key)
	w.secrets = secretsToMask(opts.Secrets)
	if len(w.secrets) > 0 {
		pairs := make([]string, 0, 2*len(w.secrets))
		for _, s := range w.secrets {
			pairs = append(pairs, s, Mask)
		}
		w.masker = strings.NewReplacer(pairs...)
	}
	w.headLimit = opts.MaxLine
	if len(w.secrets) > 0 {
		w.headLimit += len(w.secrets[0])
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	if opts.SkipOpen {
		w.state = opened
	} else {
		w.wg.Go(w.open)
	}
	w.wg.Go(w.flushLoop)
	return w
}

func withDefaults(o Options) Options {
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = DefaultMaxHistory
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.RetryWait <= 0 {
		o.RetryWait = DefaultRetryWait
	}
	return o
}

// secretsToMask returns the values to replace, longest first so that a secret containing another
// is replaced whole. A multi-line secret is also masked line by line, since lines are masked one
// at a time.
func secretsToMask(secrets []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if len(strings.TrimSpace(s)) < MinSecretLen || seen[s] {
			return
		}
		seen[s] = true
		out = append(out, s)
	}
	for _, s := range secrets {
		if !strings.Contains(s, "\n") {
			add(s)
			continue
		}
		for l := range strings.SplitSeq(s, "\n") {
			add(strings.TrimSuffix(l, "\r"))
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Write adds output to the stream. It never fails before Close: lines that cannot be sent live
// are dropped from the live stream and still kept for the upload.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.appendPartial(p)
			break
		}
		w.appendPartial(p[:i])
		w.endLine(true)
		p = p[i+1:]
	}
	return n, nil
}

func (w *Writer) appendPartial(b []byte) {
	if room := w.headLimit - len(w.partial); len(b) > room {
		b = b[:max(room, 0)]
		w.partialCut = true
	}
	w.partial = append(w.partial, b...)
}

// endLine turns the partial line into a Line; w.mu is held.
func (w *Writer) endLine(newline bool) {
	out := w.format(string(w.partial), w.partialCut, newline)
	w.partial, w.partialCut = w.partial[:0], false
	line := Line{Pos: w.pos, Out: out, Level: "info", Time: time.Now().UTC()}
	w.pos++
	size := lineSize(line)

	w.history = append(w.history, line)
	w.historyBytes += size
	for w.historyBytes > w.opts.MaxHistory && len(w.history) > 1 {
		w.historyBytes -= lineSize(w.history[0])
		w.history = w.history[1:]
	}
	if w.state == openFailed {
		return
	}
	w.pending = append(w.pending, line)
	w.pendingBytes += size
	for w.pendingBytes > w.opts.MaxHistory && len(w.pending) > 1 {
		w.pendingBytes -= lineSize(w.pending[0])
		w.pending = w.pending[1:]
	}
}

// format masks and caps one line. When bytes of the line were dropped, a tail that could be the
// start of a secret is cut first: the rest of that secret was dropped, so masking cannot see it.
func (w *Writer) format(text string, cut, newline bool) string {
	if cut {
		text = text[:w.safeEnd(text)]
	}
	if w.masker != nil {
		text = w.masker.Replace(text)
	}
	truncated := cut
	if len(text) > w.opts.MaxLine {
		end := w.opts.MaxLine
		for end > 0 && !utf8.RuneStart(text[end]) {
			end--
		}
		text, truncated = text[:end], true
	}
	if truncated {
		text += TruncatedMark
	}
	if newline && !w.opts.TrimNewline {
		text += "\n"
	}
	return text
}

// safeEnd returns where text must end so that no secret starts in it and continues past its end.
func (w *Writer) safeEnd(text string) int {
	end := len(text)
	for _, s := range w.secrets {
		for k := min(len(s)-1, len(text)); k > 0; k-- {
			if strings.HasSuffix(text, s[:k]) {
				end = min(end, len(text)-k)
				break
			}
		}
	}
	return end
}

func lineSize(l Line) int {
	b, err := json.Marshal(l)
	if err != nil {
		return len(l.Out)
	}
	return len(b)
}

func (w *Writer) open() {
	err := w.retry(w.ctx, "open", func(ctx context.Context) error { return w.t.Open(ctx, w.key) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.ctx.Err() == nil {
			w.log.Warn("could not open the live log stream; its lines will only be uploaded at the end", "err", err)
		}
		w.state = openFailed
		w.pending, w.pendingBytes = nil, 0
		return
	}
	w.state = opened
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Writer) flushLoop() {
	// A little jitter keeps many streams of one runner from sending in the same instant.
	d := w.opts.FlushEvery + rand.N(w.opts.FlushEvery/10+1)
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		}
		w.flush(w.ctx)
	}
}

// flush sends the pending lines once the stream is open; a failed send drops them.
func (w *Writer) flush(ctx context.Context) {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	w.mu.Lock()
	if w.state != opened || len(w.pending) == 0 {
		w.mu.Unlock()
		return
	}
	batch := w.pending
	w.pending, w.pendingBytes = nil, 0
	w.mu.Unlock()

	sctx, cancel := context.WithTimeout(ctx, writeTimeout)
	err := w.t.Write(sctx, w.key, batch)
	cancel()
	if err == nil {
		return
	}
	w.mu.Lock()
	first := !w.warnedWrite
	w.warnedWrite = true
	w.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	w.log.Log(ctx, level, "could not send log lines; they are dropped from the live stream", "lines", len(batch), "err", err)
}

// Close ends the stream: it sends the last partial line and the pending lines, uploads the kept
// history as the stream's permanent log (retried; not when SkipOpen), then closes the live
// stream (with a snapshot when SkipOpen; not at all when SkipClose). It returns the upload's
// error, or with SkipOpen the close's, since the snapshot is then the permanent log. Close is
// idempotent: later calls return the first call's result.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() { w.closeErr = w.close(ctx) })
	return w.closeErr
}

func (w *Writer) close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	if len(w.partial) > 0 || w.partialCut {
		w.endLine(false)
	}
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	w.flush(ctx)

	var err error
	if !w.opts.SkipOpen {
		w.mu.Lock()
		history := slices.Clone(w.history)
		w.mu.Unlock()
		err = w.retry(ctx, "upload", func(ctx context.Context) error { return w.t.Upload(ctx, w.key, history) })
		if err != nil {
			err = fmt.Errorf("upload the log %s: %w", w.key, err)
		}
	}
	if w.opts.SkipClose {
		return err
	}
	cerr := w.retry(ctx, "close", func(ctx context.Context) error { return w.t.Close(ctx, w.key, w.opts.SkipOpen) })
	if cerr != nil {
		if w.opts.SkipOpen {
			return fmt.Errorf("close the log %s with a snapshot: %w", w.key, cerr)
		}
		w.log.Warn("could not close the live log stream", "err", cerr)
	}
	return err
}

// retry calls fn up to Attempts times, waiting RetryWait, then twice as long each time (capped).
func (w *Writer) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	wait := w.opts.RetryWait
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := fn(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if attempt >= w.opts.Attempts {
			return fmt.Errorf("%s failed %d times: %w", what, attempt, err)
		}
		w.log.Debug("log stream call failed; trying again", "call", what, "attempt", attempt, "err", err)
		t := time.NewTimer(wait + rand.N(wait/5+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// History returns a copy of the lines kept for the upload.
func (w *Writer) History() []Line {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.history)
}

var _ io.Writer = (*Writer)(nil)

// discard is the transport of a Writer given none.
type discard struct{}

func (discard) Open(context.Context, string) error           { return nil }
func (discard) Write(context.Context, string, []Line) error  { return nil }
func (discard) Upload(context.Context, string, []Line) error { return nil }
func (discard) Close(context.Context, string, bool) error    { return nil }
