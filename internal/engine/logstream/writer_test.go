package logstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeTransport records every call; its failN fields make the first n calls of a kind fail.
type fakeTransport struct {
	mu         sync.Mutex
	calls      []string
	live       []logstream.Line
	uploaded   []logstream.Line
	snapshot   bool
	failOpen   int
	failWrite  int
	failUpload int
	failClose  int
}

func (f *fakeTransport) record(call string, fail *int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if *fail > 0 {
		*fail--
		return fmt.Errorf("%s refused", call)
	}
	return nil
}

func (f *fakeTransport) Open(_ context.Context, key string) error {
	return f.record("open "+key, &f.failOpen)
}

func (f *fakeTransport) Write(_ context.Context, key string, lines []logstream.Line) error {
	if err := f.record("write "+key, &f.failWrite); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live = append(f.live, lines...)
	return nil
}

func (f *fakeTransport) Upload(_ context.Context, key string, history []logstream.Line) error {
	if err := f.record("upload "+key, &f.failUpload); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploaded = history
	return nil
}

func (f *fakeTransport) Close(_ context.Context, key string, snapshot bool) error {
	if err := f.record("close "+key, &f.failClose); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshot = snapshot
	return nil
}

func (f *fakeTransport) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeTransport) Live() []logstream.Line {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]logstream.Line(nil), f.live...)
}

func (f *fakeTransport) Uploaded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.uploaded))
	for i, l := range f.uploaded {
		out[i] = l.Out
	}
	return out
}

func fastOptions(o logstream.Options) logstream.Options {
	o.FlushEvery = 10 * time.Millisecond
	o.RetryWait = time.Millisecond
	return o
}

func write(t *testing.T, w *logstream.Writer, parts ...string) {
	t.Helper()
	for _, p := range parts {
		n, err := w.Write([]byte(p))
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
}

func TestWriterSplitsSendsUploadsAndCloses(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	w := logstream.NewWriter(t.Context(), ft, "k1", fastOptions(logstream.Options{}))
	write(t, w, "hel", "lo\nwor", "ld\n", "tail")
	require.Eventually(t, func() bool { return len(ft.Live()) == 2 }, 10*time.Second, 5*time.Millisecond,
		"complete lines are sent live; the partial one waits")
	live := ft.Live()
	require.Equal(t, "hello\n", live[0].Out)
	require.Equal(t, 0, live[0].Pos)
	require.Equal(t, "world\n", live[1].Out)
	require.Equal(t, 1, live[1].Pos)
	require.Equal(t, "info", live[1].Level)
	require.False(t, live[1].Time.IsZero())

	require.NoError(t, w.Close(context.Background()))
	require.Equal(t, []string{"hello\n", "world\n", "tail"}, ft.Uploaded(), "the partial line is flushed at close")
	calls := ft.Calls()
	require.Equal(t, "open k1", calls[0])
	require.Equal(t, []string{"upload k1", "close k1"}, calls[len(calls)-2:])
	require.False(t, ft.snapshot)
	require.Len(t, ft.Live(), 3, "the last lines are sent before the upload")

	_, err := w.Write([]byte("late\n"))
	require.ErrorIs(t, err, logstream.ErrClosed)
	require.NoError(t, w.Close(context.Background()), "close is idempotent")
	require.Len(t, ft.Calls(), len(calls))
}

func TestWriterMasksSecrets(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{
		Secrets: []string{"abc", "abcdef", "", "xy", "   ", "line-one\nline-two"},
	}))
	write(t, w,
		"token abcdef and abc\n",
		"short xy stays\n",
		"split ab", "cdef across writes\n",
		"key: line-one\n", "line-two end\n",
	)
	require.NoError(t, w.Close(context.Background()))
	require.Equal(t, []string{
		"token " + logstream.Mask + " and " + logstream.Mask + "\n",
		"short xy stays\n",
		"split " + logstream.Mask + " across writes\n",
		"key: " + logstream.Mask + "\n",
		logstream.Mask + " end\n",
	}, ft.Uploaded())
	for _, l := range ft.Live() {
		require.NotContains(t, l.Out, "abc", "nothing unmasked is sent live either")
	}
}

func TestWriterCapsLines(t *testing.T) {
	t.Parallel()
	secret := "s3cr3t-value"
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{
			name:  "a complete long line",
			parts: []string{strings.Repeat("a", 30) + "\n"},
			want:  strings.Repeat("a", 16) + logstream.TruncatedMark + "\n",
		},
		{
			name:  "a line at the cap is kept",
			parts: []string{strings.Repeat("a", 16) + "\n"},
			want:  strings.Repeat("a", 16) + "\n",
		},
		{
			name:  "a cut never splits a rune",
			parts: []string{strings.Repeat("a", 15) + "é\n"},
			want:  strings.Repeat("a", 15) + logstream.TruncatedMark + "\n",
		},
		{
			name:  "a secret across the cap is masked, not cut",
			parts: []string{strings.Repeat("a", 10) + secret + "\n"},
			want:  strings.Repeat("a", 10) + logstream.Mask[:6] + logstream.TruncatedMark + "\n",
		},
		{
			name: "a huge line written in pieces keeps no part of a secret at the dropped edge",
			// The kept head is 16+12 bytes; the secret starts at byte 20 and is cut by the head's end.
			parts: []string{strings.Repeat("b", 20), secret[:4], secret[4:] + strings.Repeat("c", 100), "\n"},
			want:  strings.Repeat("b", 16) + logstream.TruncatedMark + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ft := &fakeTransport{}
			w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{MaxLine: 16, Secrets: []string{secret}}))
			write(t, w, tt.parts...)
			require.NoError(t, w.Close(context.Background()))
			require.Equal(t, []string{tt.want}, ft.Uploaded())
		})
	}
}

func TestWriterHidesASecretCutByTheHeadLimit(t *testing.T) {
	t.Parallel()
	// A long secret shrinks to the mask, so text from past the cap moves below it: the part of
	// a secret that straddles the end of the kept head must not come back into view.
	long := strings.Repeat("L", 40)
	tail := "TAILSECRET-TAILSECRE" // longer than the mask
	ft := &fakeTransport{}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{MaxLine: 20, Secrets: []string{long, tail}}))
	write(t, w, long+"x"+tail[:10], tail[10:]+strings.Repeat("z", 200)+"\n")
	require.NoError(t, w.Close(context.Background()))
	require.Equal(t, []string{logstream.Mask + "x" + logstream.TruncatedMark + "\n"}, ft.Uploaded())
}

func TestWriterCapsHistory(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	// One line of JSON here is a little over 100 bytes; a 600-byte history keeps a few.
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{MaxHistory: 600}))
	for i := range 50 {
		write(t, w, fmt.Sprintf("line %02d\n", i))
	}
	hist := w.History()
	require.NotEmpty(t, hist)
	require.Less(t, len(hist), 50)
	require.Equal(t, "line 49\n", hist[len(hist)-1].Out, "the newest lines are kept")
	require.Equal(t, 50-len(hist), hist[0].Pos, "the oldest lines are dropped")
	require.NoError(t, w.Close(context.Background()))
	require.Len(t, ft.Uploaded(), len(hist))
}

func TestWriterOpenFailureStillUploads(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{failOpen: 100}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{Attempts: 3}))
	write(t, w, "one\n")
	require.Eventually(t, func() bool {
		n := 0
		for _, c := range ft.Calls() {
			if c == "open k" {
				n++
			}
		}
		return n == 3
	}, 10*time.Second, 5*time.Millisecond, "the open is retried, then given up")
	write(t, w, "two\n")
	require.NoError(t, w.Close(context.Background()))
	require.Empty(t, ft.Live(), "nothing goes live without an open stream")
	require.Equal(t, []string{"one\n", "two\n"}, ft.Uploaded())
}

func TestWriterDropsLinesItCannotSend(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{failWrite: 1}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{}))
	write(t, w, "lost live\n")
	require.Eventually(t, func() bool { return len(ft.Calls()) >= 2 }, 10*time.Second, 5*time.Millisecond)
	write(t, w, "sent\n")
	require.NoError(t, w.Close(context.Background()))
	live := ft.Live()
	require.Len(t, live, 1)
	require.Equal(t, "sent\n", live[0].Out)
	require.Equal(t, []string{"lost live\n", "sent\n"}, ft.Uploaded())
}

func TestWriterUploadRetries(t *testing.T) {
	t.Parallel()
	t.Run("until it works", func(t *testing.T) {
		t.Parallel()
		ft := &fakeTransport{failUpload: 2}
		w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{Attempts: 3}))
		write(t, w, "x\n")
		require.NoError(t, w.Close(context.Background()))
		require.Equal(t, []string{"x\n"}, ft.Uploaded())
	})
	t.Run("and reports giving up", func(t *testing.T) {
		t.Parallel()
		ft := &fakeTransport{failUpload: 100}
		w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{Attempts: 3}))
		write(t, w, "x\n")
		err := w.Close(context.Background())
		require.ErrorContains(t, err, "upload k refused")
		require.ErrorContains(t, err, "3 times")
		n := 0
		for _, c := range ft.Calls() {
			if c == "upload k" {
				n++
			}
		}
		require.Equal(t, 3, n)
		require.Contains(t, ft.Calls(), "close k", "the stream is closed even when the upload failed")
		require.Equal(t, err, w.Close(context.Background()))
	})
	t.Run("until the context ends", func(t *testing.T) {
		t.Parallel()
		ft := &fakeTransport{failUpload: 100}
		w := logstream.NewWriter(t.Context(), ft, "k", logstream.Options{Attempts: 100, RetryWait: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, w.Close(ctx), context.DeadlineExceeded)
	})
}

func TestWriterSkipOpenAndSkipClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      logstream.Options
		want      []string
		snapshot  bool
		uploadsTo []string
	}{
		{name: "skip open: no open, no upload, close with a snapshot", opts: logstream.Options{SkipOpen: true},
			want: []string{"write k", "close k"}, snapshot: true},
		{name: "skip close: open and upload only", opts: logstream.Options{SkipClose: true},
			want: []string{"open k", "write k", "upload k"}, uploadsTo: []string{"x\n"}},
		{name: "both", opts: logstream.Options{SkipOpen: true, SkipClose: true},
			want: []string{"write k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ft := &fakeTransport{}
			w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(tt.opts))
			write(t, w, "x\n")
			require.NoError(t, w.Close(context.Background()))
			require.Equal(t, tt.want, ft.Calls())
			require.Equal(t, tt.snapshot, ft.snapshot)
			if tt.uploadsTo != nil {
				require.Equal(t, tt.uploadsTo, ft.Uploaded())
			}
		})
	}
}

func TestWriterSnapshotCloseErrorIsReported(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{failClose: 100}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{SkipOpen: true, Attempts: 2}))
	require.ErrorContains(t, w.Close(context.Background()), "snapshot")
}

func TestWriterTrimNewline(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{TrimNewline: true, MaxLine: 4}))
	write(t, w, "a\nbcdefg\n\nend")
	require.NoError(t, w.Close(context.Background()))
	require.Equal(t, []string{"a", "bcde" + logstream.TruncatedMark, "", "end"}, ft.Uploaded())
}

func TestWriterConcurrentWrites(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	w := logstream.NewWriter(t.Context(), ft, "k", fastOptions(logstream.Options{}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				_, _ = fmt.Fprintf(w, "g%d line %d\n", g, i)
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close(context.Background()))
	up := ft.Uploaded()
	require.Len(t, up, 800)
	for _, l := range up {
		require.Regexp(t, `^g\d line \d+\n$`, l, "writes never interleave within a line")
	}
	live := ft.Live()
	require.Len(t, live, 800)
	for i, l := range live {
		require.Equal(t, i, l.Pos, "lines go live in order")
	}
}

func TestWriterEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{failOpen: 1000}
	ctx, cancel := context.WithCancel(context.Background())
	w := logstream.NewWriter(ctx, ft, "k", logstream.Options{RetryWait: time.Hour})
	cancel()
	write(t, w, "x\n")
	require.NoError(t, w.Close(context.Background()), "the history is uploaded with Close's context")
	require.Equal(t, []string{"x\n"}, ft.Uploaded())
}

type staticFactory struct {
	t   logstream.Transport
	err error
}

func (f staticFactory) Transport(logstream.Config) (logstream.Transport, logstream.Options, error) {
	return f.t, logstream.Options{TrimNewline: true}, f.err
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	ft := &fakeTransport{}
	r := logstream.Registry{
		"fake":   staticFactory{t: ft},
		"broken": staticFactory{err: errors.New("bad settings")},
	}
	for _, kind := range []string{"", logstream.KindNone} {
		tr, _, err := r.Transport(logstream.Config{Kind: kind})
		require.NoError(t, err)
		require.Nil(t, tr)
	}
	tr, opts, err := r.Transport(logstream.Config{Kind: "fake"})
	require.NoError(t, err)
	require.Same(t, ft, tr)
	require.True(t, opts.TrimNewline)
	_, _, err = r.Transport(logstream.Config{Kind: "drone"})
	require.ErrorIs(t, err, logstream.ErrUnknownKind)
	_, _, err = r.Transport(logstream.Config{Kind: "broken"})
	require.ErrorContains(t, err, "bad settings")
}
