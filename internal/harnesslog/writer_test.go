package harnesslog_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
	"github.com/dlite-dev/dlite/internal/harnesslog"
	"github.com/dlite-dev/dlite/mockmanager"
)

// A step's output goes through the engine's log writer and this transport to the mock log
// service, for each combination of log_config flags a stage can carry: what reaches the stream and
// the permanent log is what a user of the real service would see.
func TestStepLogsThroughTheWriter(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-secret"
	tests := []struct {
		name string
		cfg  map[string]any
		// preopened: the stream was opened by someone else (skip_opening_stream).
		preopened  bool
		via        mockmanager.LogBlobSource
		streamOpen bool
		want       []string
	}{
		{"direct upload", map[string]any{}, false, mockmanager.BlobViaLink, false,
			[]string{"building\n", "password is **************\n", "no newline at the end"}},
		{"indirect upload", map[string]any{"indirect_upload": true}, false, mockmanager.BlobViaService, false,
			[]string{"building\n", "password is **************\n", "no newline at the end"}},
		{"trimmed newlines", map[string]any{"trim_new_line_suffix": true}, false, mockmanager.BlobViaLink, false,
			[]string{"building", "password is **************", "no newline at the end"}},
		{"stream opened by someone else", map[string]any{"skip_opening_stream": true}, true, mockmanager.BlobViaSnapshot, false,
			[]string{"building\n", "password is **************\n", "no newline at the end"}},
		{"stream left open", map[string]any{"skip_closing_stream": true}, false, mockmanager.BlobViaLink, true,
			[]string{"building\n", "password is **************\n", "no newline at the end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mockmanager.Options{})
			key := "stage/" + tt.name
			if tt.preopened {
				openAsManager(t, e, key)
			}
			cfg := map[string]any{"url": e.mm.LogServiceURL(), "account_id": e.mm.AccountID(), "token": e.mm.LogToken()}
			for k, v := range tt.cfg {
				cfg[k] = v
			}
			raw, err := json.Marshal(cfg)
			require.NoError(t, err)
			tr, opts, err := harnesslog.NewFactory(e.hc).Transport(logstream.Config{Kind: harnesslog.Kind, Settings: raw})
			require.NoError(t, err)
			opts.Secrets = []string{secret}
			// Lines are sent when the stream opens and at the close, never on a timer in between:
			// a send still in flight when the writer closes may be dropped (live lines are best
			// effort), and this test holds the stream to every line.
			opts.FlushEvery = time.Hour

			ctx := context.Background()
			gated := &gatedOpen{Transport: tr, gate: make(chan struct{})}
			w := logstream.NewWriter(ctx, gated, key, opts)
			_, err = io.WriteString(w, "building\n")
			require.NoError(t, err)
			close(gated.gate)
			if !tt.preopened {
				// The writer opens the stream in the background and sends what it holds once it
				// is open; a step runs longer than that.
				require.Eventually(t, func() bool {
					lines, err := e.mm.StreamLines("", key)
					return err == nil && len(lines) > 0
				}, 10*time.Second, 5*time.Millisecond)
			}
			_, err = io.WriteString(w, "password is "+secret+"\nno newline ")
			require.NoError(t, err)
			_, err = io.WriteString(w, "at the end")
			require.NoError(t, err)
			require.NoError(t, w.Close(ctx))

			blob, err := e.mm.Blob("", key)
			require.NoError(t, err)
			require.Equal(t, tt.via, blob.Via)
			require.Equal(t, tt.want, outs(blob.Lines))
			st, err := e.mm.Stream("", key)
			require.NoError(t, err)
			require.Equal(t, tt.streamOpen, st.Open)
			require.Equal(t, tt.want, outs(st.Lines), "every line was streamed live too")
			require.NotContains(t, mockmanager.LogText(st.Lines), secret)
		})
	}
}

// A stage whose log token the service refuses fails its upload, and says so.
func TestWriterReportsARefusedUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mockmanager.Options{})
	tr, opts, err := harnesslog.NewFactory(e.hc).Transport(e.config(t, harnesslog.Settings{
		URL: e.mm.LogServiceURL(), AccountID: e.mm.AccountID(), Token: "revoked",
	}))
	require.NoError(t, err)
	opts.Attempts, opts.RetryWait = 2, time.Millisecond
	ctx := context.Background()
	w := logstream.NewWriter(ctx, tr, "stage/step", opts)
	_, err = io.WriteString(w, "lost\n")
	require.NoError(t, err)
	err = w.Close(ctx)
	require.ErrorContains(t, err, "get upload link stage/step: status 400 Bad Request: the token is not valid")
	require.NotContains(t, err.Error(), "revoked")
	_, err = e.mm.Blob("", "stage/step")
	require.ErrorIs(t, err, errs.ErrNotFound)
}

// gatedOpen holds the stream's open back until the test lets it go, so the first line is
// waiting when the stream opens.
type gatedOpen struct {
	logstream.Transport
	gate chan struct{}
}

func (g *gatedOpen) Open(ctx context.Context, key string) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Transport.Open(ctx, key)
}

// openAsManager opens a stream the way the manager does before a step whose log_config says
// skip_opening_stream.
func openAsManager(t *testing.T, e *env, key string) {
	t.Helper()
	c, err := logapi.NewClientWithResponses(e.mm.LogServiceURL(), logapi.WithHTTPClient(e.hc),
		logapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("X-Harness-Token", e.mm.LogToken())
			return nil
		}))
	require.NoError(t, err)
	res, err := c.OpenStreamWithResponse(context.Background(), &logapi.OpenStreamParams{AccountID: e.mm.AccountID(), Key: key})
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
}
