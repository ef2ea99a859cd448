package mockmanager_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/mockmanager"
)

// logClient is a runner's view of the mock log service: the generated client, carrying the token
// the way the editor puts it.
type logClient struct {
	t       testing.TB
	c       *logapi.ClientWithResponses
	hc      *http.Client
	account string
}

func newLogClient(t testing.TB, mm *mockmanager.TestServer, editor logapi.RequestEditorFn) *logClient {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	opts := []logapi.ClientOption{logapi.WithHTTPClient(hc)}
	if editor != nil {
		opts = append(opts, logapi.WithRequestEditorFn(editor))
	}
	c, err := logapi.NewClientWithResponses(mm.LogServiceURL(), opts...)
	require.NoError(t, err)
	return &logClient{t: t, c: c, hc: hc, account: mm.AccountID()}
}

func tokenHeader(token string) logapi.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("X-Harness-Token", token)
		return nil
	}
}

func (lc *logClient) open(key string) {
	lc.t.Helper()
	res, err := lc.c.OpenStreamWithResponse(context.Background(), &logapi.OpenStreamParams{AccountID: lc.account, Key: key})
	require.NoError(lc.t, err)
	require.Equal(lc.t, http.StatusNoContent, res.StatusCode(), string(res.Body))
}

func (lc *logClient) write(key string, lines ...logapi.Line) int {
	lc.t.Helper()
	res, err := lc.c.WriteStreamWithResponse(context.Background(), &logapi.WriteStreamParams{AccountID: lc.account, Key: key}, lines)
	require.NoError(lc.t, err)
	return res.StatusCode()
}

func (lc *logClient) close(key string, snapshot, prefix bool) {
	lc.t.Helper()
	res, err := lc.c.CloseStreamWithResponse(context.Background(),
		&logapi.CloseStreamParams{AccountID: lc.account, Key: key, Snapshot: &snapshot, Prefix: &prefix})
	require.NoError(lc.t, err)
	require.Equal(lc.t, http.StatusNoContent, res.StatusCode(), string(res.Body))
}

func line(pos int, out string) logapi.Line {
	return logapi.Line{Pos: pos, Out: out, Level: new("info"), Time: time.Now().UTC().Truncate(time.Millisecond)}
}

func ndjsonOf(t testing.TB, lines ...logapi.Line) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		j, err := json.Marshal(l)
		require.NoError(t, err)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func outs(lines []mockmanager.LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Out)
	}
	return out
}

func TestLogStreamLifecycle(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))

	require.Equal(t, http.StatusOK, lc.write("stage/step1", line(0, "early\n")), "no stream yet: dropped")
	_, err := mm.StreamLines("", "stage/step1")
	require.ErrorIs(t, err, errs.ErrNotFound)

	lc.open("stage/step1")
	lc.open("stage/step2")
	lc.open("other/step")
	require.Equal(t, http.StatusNoContent, lc.write("stage/step1", line(0, "one\n"), line(1, "two\n")))
	require.Equal(t, http.StatusNoContent, lc.write("stage/step1", line(2, "three\n")))
	require.Equal(t, http.StatusNoContent, lc.write("stage/step2", line(0, "other step\n")))

	lines, err := mm.StreamLines(mm.AccountID(), "stage/step1")
	require.NoError(t, err)
	require.Equal(t, []string{"one\n", "two\n", "three\n"}, outs(lines))
	require.Equal(t, 2, lines[2].Pos)
	require.Equal(t, "one\ntwo\nthree\n", mockmanager.LogText(lines))

	// A plain close keeps no permanent log; the stream keeps its lines for tests to read.
	lc.close("stage/step1", false, false)
	st, err := mm.Stream("", "stage/step1")
	require.NoError(t, err)
	require.False(t, st.Open)
	require.NotNil(t, st.Closed)
	require.Len(t, st.Lines, 3)
	_, err = mm.Blob("", "stage/step1")
	require.ErrorIs(t, err, errs.ErrNotFound)
	require.Equal(t, http.StatusOK, lc.write("stage/step1", line(3, "late\n")), "closed: dropped")
	lines, _ = mm.StreamLines("", "stage/step1")
	require.Len(t, lines, 3)

	// A prefix close with snapshot closes every open stream under the prefix, and only those.
	lc.close("stage/", true, true)
	st, err = mm.Stream("", "stage/step2")
	require.NoError(t, err)
	require.False(t, st.Open)
	blob, err := mm.Blob("", "stage/step2")
	require.NoError(t, err)
	require.Equal(t, mockmanager.BlobViaSnapshot, blob.Via)
	require.Equal(t, []string{"other step\n"}, outs(blob.Lines))
	_, err = mm.Blob("", "stage/step1")
	require.ErrorIs(t, err, errs.ErrNotFound, "already closed: no snapshot")
	other, err := mm.Stream("", "other/step")
	require.NoError(t, err)
	require.True(t, other.Open)

	// Opening again starts afresh.
	lc.open("stage/step1")
	lines, err = mm.StreamLines("", "stage/step1")
	require.NoError(t, err)
	require.Empty(t, lines)

	keys := mm.LogKeys("stage/")
	require.Len(t, keys, 2)
	require.Equal(t, "stage/step1", keys[0].Key)
	require.True(t, keys[0].Stream.Open)
	require.Nil(t, keys[0].Blob)
	require.Equal(t, 1, keys[1].Blob.Lines)
	require.Len(t, mm.LogKeys(""), 3)
}

func TestLogServiceAuth(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{LogToken: "log-token"})
	require.Equal(t, "log-token", mm.LogToken())
	good := func(_ context.Context, req *http.Request) error { return nil }
	tests := []struct {
		name    string
		editor  logapi.RequestEditorFn
		account string
		status  int
		msg     string
	}{
		{"header", tokenHeader("log-token"), "", http.StatusNoContent, ""},
		{"query", func(_ context.Context, req *http.Request) error {
			q := req.URL.Query()
			q.Set("X-Harness-Token", "log-token")
			req.URL.RawQuery = q.Encode()
			return nil
		}, "", http.StatusNoContent, ""},
		{"api key", func(_ context.Context, req *http.Request) error {
			req.Header.Set("x-api-key", "log-token")
			return nil
		}, "", http.StatusNoContent, ""},
		{"no token", good, "", http.StatusBadRequest, "no token"},
		{"wrong token", tokenHeader("not-it"), "", http.StatusBadRequest, "token is not valid"},
		{"other account", tokenHeader("log-token"), "someone-else", http.StatusBadRequest, `not valid for account "someone-else"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lc := newLogClient(t, mm, tt.editor)
			account := lc.account
			if tt.account != "" {
				account = tt.account
			}
			res, err := lc.c.OpenStreamWithResponse(context.Background(), &logapi.OpenStreamParams{AccountID: account, Key: "k-" + tt.name})
			require.NoError(t, err)
			require.Equal(t, tt.status, res.StatusCode(), string(res.Body))
			if tt.msg != "" {
				require.NotNil(t, res.JSON400, string(res.Body))
				require.Contains(t, res.JSON400.ErrorMsg, tt.msg)
				require.NotContains(t, string(res.Body), "log-token")
				_, err := mm.Stream(account, "k-"+tt.name)
				require.ErrorIs(t, err, errs.ErrNotFound, "a refused call changes nothing")
			}
		})
	}
}

// Refusals come in the service's error body, naming what is wrong.
func TestLogServiceRefusesMalformedRequests(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	q := func(v url.Values) string { return mm.LogServiceURL() + "/stream?" + v.Encode() }
	tests := []struct {
		name, method, url, contentType, body, msg string
		status                                    int
	}{
		{"no key", http.MethodPost, q(url.Values{"accountID": {mm.AccountID()}}), "", "", "key", http.StatusBadRequest},
		{"no account", http.MethodPost, q(url.Values{"key": {"k"}}), "", "", "accountID", http.StatusBadRequest},
		{"lines not an array", http.MethodPut, q(url.Values{"accountID": {mm.AccountID()}, "key": {"k"}}), "application/json", `{"out":"x"}`, "request body", http.StatusBadRequest},
		{"line without out", http.MethodPut, q(url.Values{"accountID": {mm.AccountID()}, "key": {"k"}}), "application/json", `[{"pos":0,"time":"2026-01-02T03:04:05Z"}]`, "out", http.StatusBadRequest},
		{"line with a bad time", http.MethodPut, q(url.Values{"accountID": {mm.AccountID()}, "key": {"k"}}), "application/json", `[{"pos":0,"out":"x","time":"yesterday"}]`, "time", http.StatusBadRequest},
		{"unknown method", http.MethodPatch, q(url.Values{"accountID": {mm.AccountID()}, "key": {"k"}}), "", "", "Method Not Allowed", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(context.Background(), tt.method, tt.url, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("X-Harness-Token", mm.LogToken())
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			res, err := hc.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			require.Equal(t, tt.status, res.StatusCode, string(body))
			var e logapi.Error
			require.NoError(t, json.Unmarshal(body, &e), string(body))
			require.Contains(t, e.ErrorMsg, tt.msg)
		})
	}
}

func TestLogUploadThroughService(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))
	params := &logapi.UploadBlobParams{AccountID: mm.AccountID(), Key: "stage/step"}

	body := ndjsonOf(t, line(0, "hello\n"), line(1, "world\n"))
	res, err := lc.c.UploadBlobWithBodyWithResponse(context.Background(), params, "application/x-ndjson", strings.NewReader(body))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))
	blob, err := mm.Blob("", "stage/step")
	require.NoError(t, err)
	require.Equal(t, mockmanager.BlobViaService, blob.Via)
	require.Equal(t, []string{"hello\n", "world\n"}, outs(blob.Lines))

	for name, bad := range map[string]string{
		"not JSON":      "{\"pos\":0,\"out\":\"a\",\"time\":\"2026-01-02T03:04:05Z\"}\nnot json\n",
		"no out":        "{\"pos\":0,\"time\":\"2026-01-02T03:04:05Z\"}\n",
		"negative pos":  "{\"pos\":-1,\"out\":\"a\",\"time\":\"2026-01-02T03:04:05Z\"}\n",
		"not an object": "[1,2]\n",
	} {
		res, err := lc.c.UploadBlobWithBodyWithResponse(context.Background(), params, "application/x-ndjson", strings.NewReader(bad))
		require.NoError(t, err, name)
		require.Equal(t, http.StatusBadRequest, res.StatusCode(), "%s: %s", name, res.Body)
		require.Contains(t, res.JSON400.ErrorMsg, "NDJSON line", name)
	}
	blob, err = mm.Blob("", "stage/step")
	require.NoError(t, err)
	require.Len(t, blob.Lines, 2, "a refused upload changes nothing")
}

func TestLogUploadThroughSignedLink(t *testing.T) {
	t.Parallel()
	clk := newClock()
	mm := mockmanager.NewTest(t, mockmanager.Options{Now: clk.Now, LogLinkTTL: time.Minute})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))
	ctx := context.Background()

	newLink := func(key string) string {
		res, err := lc.c.UploadLinkWithResponse(ctx, &logapi.UploadLinkParams{AccountID: mm.AccountID(), Key: key})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
		require.True(t, strings.HasPrefix(res.JSON200.Link, mm.LogServiceURL()+"/storage/upload?"), res.JSON200.Link)
		require.NotNil(t, res.JSON200.Expires)
		return res.JSON200.Link
	}
	put := func(link, body string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, link, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := lc.hc.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		answer, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(answer)
	}
	body := ndjsonOf(t, line(0, "direct\n"))

	link := newLink("stage/a")
	status, answer := put(link, body)
	require.Equal(t, http.StatusNoContent, status, answer)
	blob, err := mm.Blob("", "stage/a")
	require.NoError(t, err)
	require.Equal(t, mockmanager.BlobViaLink, blob.Via)
	require.Equal(t, []string{"direct\n"}, outs(blob.Lines))

	// The link works for its own key only.
	u, err := url.Parse(newLink("stage/b"))
	require.NoError(t, err)
	q := u.Query()
	q.Set("key", "stage/c")
	u.RawQuery = q.Encode()
	status, answer = put(u.String(), body)
	require.Equal(t, http.StatusForbidden, status, answer)
	require.Contains(t, answer, "signature does not match")
	_, err = mm.Blob("", "stage/c")
	require.ErrorIs(t, err, errs.ErrNotFound)

	// A link stops working when it expires.
	link = newLink("stage/b")
	clk.Advance(2 * time.Minute)
	status, answer = put(link, body)
	require.Equal(t, http.StatusForbidden, status, answer)
	require.Contains(t, answer, "expired")
	_, err = mm.Blob("", "stage/b")
	require.ErrorIs(t, err, errs.ErrNotFound)
}

func TestLogTail(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))
	lc.open("tail/step")
	require.Equal(t, http.StatusNoContent, lc.write("tail/step", line(0, "before\n")))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := lc.c.TailStream(ctx, &logapi.TailStreamParams{AccountID: mm.AccountID(), Key: "tail/step"})
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	events := bufio.NewScanner(res.Body)
	next := func() string {
		t.Helper()
		for events.Scan() {
			if text := events.Text(); text != "" {
				return text
			}
		}
		require.NoError(t, events.Err())
		return ""
	}
	dataOut := func(event string) string {
		t.Helper()
		require.True(t, strings.HasPrefix(event, "data: "), event)
		var l logapi.Line
		require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(event, "data: ")), &l))
		return l.Out
	}
	require.Equal(t, "before\n", dataOut(next()))
	require.Equal(t, http.StatusNoContent, lc.write("tail/step", line(1, "live\n")))
	require.Equal(t, "live\n", dataOut(next()), "a new line reaches the tail while the stream is open")
	lc.close("tail/step", false, false)
	require.Equal(t, "event: eof", next())
	require.Equal(t, "data: eof", next())
	require.Equal(t, "", next(), "the answer ends after eof")

	// A key with no open stream ends at once.
	res2, err := lc.c.TailStream(ctx, &logapi.TailStreamParams{AccountID: mm.AccountID(), Key: "tail/none"})
	require.NoError(t, err)
	all, err := io.ReadAll(res2.Body)
	_ = res2.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "event: eof\ndata: eof\n\n", string(all))
}

func TestAdminLogs(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))
	admin := newAdminClient(t, mm)
	ctx := context.Background()

	lc.open("s/1")
	require.Equal(t, http.StatusNoContent, lc.write("s/1", line(0, "streamed\n")))
	res, err := lc.c.UploadBlobWithBodyWithResponse(ctx, &logapi.UploadBlobParams{AccountID: mm.AccountID(), Key: "s/2"},
		"application/x-ndjson", strings.NewReader(ndjsonOf(t, line(0, "uploaded\n"))))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, res.StatusCode(), string(res.Body))

	keys, err := admin.ListLogKeysWithResponse(ctx, &adminapi.ListLogKeysParams{Prefix: new("s/")})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, keys.StatusCode(), string(keys.Body))
	require.Len(t, *keys.JSON200, 2)
	require.Equal(t, "s/1", (*keys.JSON200)[0].Key)
	require.Equal(t, 1, (*keys.JSON200)[0].Stream.Lines)
	require.Equal(t, adminapi.LogBlobSourceService, (*keys.JSON200)[1].Blob.Via)
	none, err := admin.ListLogKeysWithResponse(ctx, &adminapi.ListLogKeysParams{AccountId: new("another")})
	require.NoError(t, err)
	require.Empty(t, *none.JSON200)

	st, err := admin.GetLogStreamWithResponse(ctx, &adminapi.GetLogStreamParams{Key: "s/1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st.StatusCode(), string(st.Body))
	require.True(t, st.JSON200.Open)
	require.Equal(t, mm.AccountID(), st.JSON200.AccountId)
	require.Equal(t, "streamed\n", st.JSON200.Lines[0].Out)

	blob, err := admin.GetLogBlobWithResponse(ctx, &adminapi.GetLogBlobParams{AccountId: new(mm.AccountID()), Key: "s/2"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, blob.StatusCode(), string(blob.Body))
	require.Equal(t, "uploaded\n", blob.JSON200.Lines[0].Out)

	missing, err := admin.GetLogBlobWithResponse(ctx, &adminapi.GetLogBlobParams{Key: "s/1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, missing.StatusCode(), string(missing.Body))
	require.Contains(t, missing.JSON404.Message, "no permanent log")
	missingStream, err := admin.GetLogStreamWithResponse(ctx, &adminapi.GetLogStreamParams{Key: "nope"})
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, missingStream.StatusCode(), string(missingStream.Body))

	cfg, err := admin.GetLogConfigWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, cfg.StatusCode(), string(cfg.Body))
	require.Equal(t, mm.LogConfig(), *cfg.JSON200)
	require.JSONEq(t, fmt.Sprintf(`{"url":%q,"account_id":%q,"token":%q}`, mm.LogServiceURL(), mm.AccountID(), mm.LogToken()),
		string(cfg.Body), "the wire's own names, to paste into a log_config")
}

func TestWaitBlob(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	lc := newLogClient(t, mm, tokenHeader(mm.LogToken()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan mockmanager.LogBlob, 1)
	go func() {
		b, err := mm.WaitBlob(ctx, "", "w/1")
		if err == nil {
			got <- b
		}
		close(got)
	}()
	lc.open("w/1")
	require.Equal(t, http.StatusNoContent, lc.write("w/1", line(0, "x\n")))
	lc.close("w/1", true, false)
	b, ok := <-got
	require.True(t, ok, "WaitBlob returned an error")
	require.Equal(t, []string{"x\n"}, outs(b.Lines))

	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	_, err := mm.WaitBlob(short, "", "never")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
