package harnesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	logapi "github.com/dlite-dev/dlite/gen/logservice"
	"github.com/dlite-dev/dlite/internal/engine/logstream"
)

// Timeouts of the calls to the log service, each on top of the caller's context.
const (
	// RequestTimeout bounds one call that carries no log history: open, write, close, and asking
	// for an upload link. A live write slower than this is dropped by the writer (best effort).
	RequestTimeout = 15 * time.Second
	// UploadTimeout bounds one upload of a key's history (up to the writer's history cap).
	UploadTimeout = 2 * time.Minute
)

// ndjsonType is the content type of an upload through the service.
const ndjsonType = "application/x-ndjson"

// defaultLevel is the level of a line that has none: the level runners send for step output.
const defaultLevel = "info"

// Transport carries log streams to one Harness log service for one account. It implements
// logstream.Transport; its methods are safe for concurrent use, for any number of keys.
type Transport struct {
	client   *logapi.ClientWithResponses
	storage  *http.Client
	account  string
	token    string
	indirect bool
}

var _ logstream.Transport = (*Transport)(nil)

// New returns a Transport for the service and account in s. Calls go through client (nil means
// http.DefaultClient), both to the service and to the signed upload links it hands out. It fails
// when the URL is missing or not an absolute http(s) URL, or the account id is missing.
func New(client *http.Client, s Settings) (*Transport, error) {
	base := strings.TrimRight(strings.TrimSpace(s.URL), "/")
	if base == "" {
		return nil, errors.New("harness log service: the stage's log config has no url")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("harness log service: the stage's log config url %q is not an absolute http(s) URL", base)
	}
	if s.AccountID == "" {
		return nil, errors.New("harness log service: the stage's log config has no account_id")
	}
	if client == nil {
		client = http.DefaultClient
	}
	token := s.Token
	c, err := logapi.NewClientWithResponses(base,
		logapi.WithHTTPClient(client),
		logapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			if token != "" {
				req.Header.Set("X-Harness-Token", token)
			}
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("harness log service: client for %s: %w", base, err)
	}
	return &Transport{client: c, storage: client, account: s.AccountID, token: token, indirect: s.IndirectUpload}, nil
}

// Open opens the live stream of key.
func (t *Transport) Open(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	res, err := t.client.OpenStreamWithResponse(ctx, &logapi.OpenStreamParams{AccountID: t.account, Key: key})
	if err != nil {
		return callFailed("open stream", key, err)
	}
	return t.check("open stream", key, res.HTTPResponse, res.Body)
}

// Write appends lines to the live stream of key. A stream the service does not know (it answers
// 200 and drops the lines) is not an error: live logs are best effort.
func (t *Transport) Write(ctx context.Context, key string, lines []logstream.Line) error {
	if len(lines) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	res, err := t.client.WriteStreamWithResponse(ctx, &logapi.WriteStreamParams{AccountID: t.account, Key: key}, wireLines(lines))
	if err != nil {
		return callFailed("write stream", key, err)
	}
	return t.check("write stream", key, res.HTTPResponse, res.Body)
}

// Upload stores history as the permanent log of key: straight to storage through a signed link
// the service hands out, or through the service itself when the settings ask for indirect upload.
func (t *Transport) Upload(ctx context.Context, key string, history []logstream.Line) error {
	body, err := ndjson(history)
	if err != nil {
		return fmt.Errorf("harness log service: upload %s: %w", key, err)
	}
	if t.indirect {
		return t.uploadIndirect(ctx, key, body)
	}
	return t.uploadDirect(ctx, key, body)
}

func (t *Transport) uploadIndirect(ctx context.Context, key string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, UploadTimeout)
	defer cancel()
	res, err := t.client.UploadBlobWithBodyWithResponse(ctx, &logapi.UploadBlobParams{AccountID: t.account, Key: key},
		ndjsonType, bytes.NewReader(body))
	if err != nil {
		return callFailed("upload blob", key, err)
	}
	return t.check("upload blob", key, res.HTTPResponse, res.Body)
}

func (t *Transport) uploadDirect(ctx context.Context, key string, body []byte) error {
	linkCtx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	res, err := t.client.UploadLinkWithResponse(linkCtx, &logapi.UploadLinkParams{AccountID: t.account, Key: key})
	if err != nil {
		return callFailed("get upload link", key, err)
	}
	if err := t.check("get upload link", key, res.HTTPResponse, res.Body); err != nil {
		return err
	}
	if res.JSON200 == nil || res.JSON200.Link == "" {
		return &StatusError{Call: "get upload link", Key: key, Status: res.StatusCode(), Message: "the answer carries no link"}
	}
	link := res.JSON200.Link

	ctx, cancelPut := context.WithTimeout(ctx, UploadTimeout)
	defer cancelPut()
	// The link is the storage's, outside the service's API: a plain request, with no token and
	// no content type (a signed link may be signed over the content type).
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, link, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("harness log service: upload %s to link %s: %w", key, redact(link), err)
	}
	resp, err := t.storage.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// The error would quote the link, signature and all.
			ue.URL = redact(link)
		}
		return callFailed("upload to link", key, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return t.check("upload to link "+redact(link), key, resp, answer)
}

// Close ends the live stream of key; with snapshot the service stores what the stream holds as
// the permanent log first.
func (t *Transport) Close(ctx context.Context, key string, snapshot bool) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	params := &logapi.CloseStreamParams{AccountID: t.account, Key: key}
	if snapshot {
		params.Snapshot = &snapshot
	}
	res, err := t.client.CloseStreamWithResponse(ctx, params)
	if err != nil {
		return callFailed("close stream", key, err)
	}
	return t.check("close stream", key, res.HTTPResponse, res.Body)
}

// wireLines converts lines to the service's form.
func wireLines(lines []logstream.Line) []logapi.Line {
	out := make([]logapi.Line, len(lines))
	for i, l := range lines {
		level := l.Level
		if level == "" {
			level = defaultLevel
		}
		out[i] = logapi.Line{Pos: l.Pos, Out: l.Out, Level: &level, Time: l.Time}
	}
	return out
}

// ndjson encodes lines as the service stores them: one line's JSON per text line.
func ndjson(lines []logstream.Line) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, l := range wireLines(lines) {
		// Encode ends every value with a newline.
		if err := enc.Encode(l); err != nil {
			return nil, fmt.Errorf("encode line %d: %w", l.Pos, err)
		}
	}
	return b.Bytes(), nil
}

// redact leaves out a link's query, which holds its signature.
func redact(link string) string {
	u, err := url.Parse(link)
	if err != nil {
		return "(unparsable link)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}
