package mockmanager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/mockmanager"
)

// FuzzLogServiceRequestBodies sends arbitrary bodies to every log service operation that takes one
// (lines to an open stream, an upload through the service, an upload to a signed link), with a
// good token: the mock answers each with a success or a 400/403 refusal carrying error_msg, never
// a 500 (a bug of the mock), and keeps serving.
func FuzzLogServiceRequestBodies(f *testing.F) {
	f.Add(uint8(0), []byte(`[{"level":"info","pos":0,"out":"hello\n","time":"2026-11-29T12:00:00Z","args":null}]`))
	f.Add(uint8(0), []byte(`[{"pos":1,"out":"","time":"2026-11-29T12:00:00.123456789+02:00","args":{"k":"v"}}]`))
	f.Add(uint8(1), []byte("{\"level\":\"info\",\"pos\":0,\"out\":\"a\\n\",\"time\":\"2026-11-29T12:00:00Z\"}\n{\"pos\":1,\"out\":\"b\",\"time\":\"2026-11-29T12:00:01Z\"}\n"))
	f.Add(uint8(2), []byte("{\"pos\":0,\"out\":\"via link\\n\",\"time\":\"2026-11-29T12:00:00Z\"}\n"))
	for op := range uint8(3) {
		for _, body := range []string{``, `null`, `[]`, `{}`, `[{"pos":-1}]`, "\n\n", `{"pos":"x"`, `"x"`, "[1]\n{}"} {
			f.Add(op, []byte(body))
		}
	}
	mm := mockmanager.NewTest(f, mockmanager.Options{Logger: slog.New(slog.DiscardHandler)})
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	f.Cleanup(hc.CloseIdleConnections)
	lc, err := logapi.NewClientWithResponses(mm.LogServiceURL(), logapi.WithHTTPClient(hc),
		logapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("X-Harness-Token", mm.LogToken())
			return nil
		}))
	require.NoError(f, err)
	ctx := context.Background()
	q := url.Values{"accountID": {mm.AccountID()}, "key": {"fuzz/step"}}
	opened, err := lc.OpenStreamWithResponse(ctx, &logapi.OpenStreamParams{AccountID: mm.AccountID(), Key: "fuzz/step"})
	require.NoError(f, err)
	require.Equal(f, http.StatusNoContent, opened.StatusCode())
	link, err := lc.UploadLinkWithResponse(ctx, &logapi.UploadLinkParams{AccountID: mm.AccountID(), Key: "fuzz/step"})
	require.NoError(f, err)
	require.Equal(f, http.StatusOK, link.StatusCode(), string(link.Body))

	type call struct{ method, url, contentType string }
	calls := []call{
		{http.MethodPut, mm.LogServiceURL() + "/stream?" + q.Encode(), "application/json"},
		{http.MethodPost, mm.LogServiceURL() + "/blob?" + q.Encode(), "application/x-ndjson"},
		{http.MethodPut, link.JSON200.Link, ""},
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		c := calls[int(op)%len(calls)]
		req, err := http.NewRequestWithContext(ctx, c.method, c.url, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("X-Harness-Token", mm.LogToken())
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		answer, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Less(t, resp.StatusCode, 500, "%s %s answered %d: %s", c.method, c.url, resp.StatusCode, answer)
		if resp.StatusCode >= 400 {
			var e logapi.Error
			require.NoError(t, json.Unmarshal(answer, &e), "a refusal is the service's error body: %s", answer)
			require.NotEmpty(t, e.ErrorMsg, "a refusal says why")
		}
	})
}
