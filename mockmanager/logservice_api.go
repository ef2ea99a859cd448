package mockmanager

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/labstack/echo/v4"

	logapi "github.com/dlite-dev/dlite/gen/logservice"
)

// ndjson is the content type of the log service's uploads.
const ndjson = "application/x-ndjson"

// maxUpload caps an upload body: the runners' history cap is 5 MiB of line JSON, so this leaves
// ample room and still bounds what a broken client can make the mock hold.
const maxUpload = 64 << 20

func init() {
	// kin-openapi decodes only the content types it knows; an NDJSON upload is validated as the
	// string the contract declares, and its lines by the handler against the Line schema.
	openapi3filter.RegisterBodyDecoder(ndjson, openapi3filter.PlainBodyDecoder)
}

// logAPI serves the Harness log service contract (openapi/logservice.yaml) over the logService
// state. Requests reach it validated and authenticated.
type logAPI struct {
	s *Server
	l *logService
}

func logError(format string, args ...any) logapi.BadRequestJSONResponse {
	return logapi.BadRequestJSONResponse{ErrorMsg: fmt.Sprintf(format, args...)}
}

func (a logAPI) OpenStream(_ context.Context, req logapi.OpenStreamRequestObject) (logapi.OpenStreamResponseObject, error) {
	a.l.open(req.Params.AccountID, req.Params.Key)
	a.s.log.Info("log stream opened", "account", req.Params.AccountID, "key", req.Params.Key)
	return logapi.OpenStream204Response{}, nil
}

func (a logAPI) WriteStream(_ context.Context, req logapi.WriteStreamRequestObject) (logapi.WriteStreamResponseObject, error) {
	if !a.l.write(req.Params.AccountID, req.Params.Key, *req.Body) {
		a.s.log.Debug("log lines dropped: no open stream", "account", req.Params.AccountID, "key", req.Params.Key,
			"lines", len(*req.Body))
		return logapi.WriteStream200Response{}, nil
	}
	return logapi.WriteStream204Response{}, nil
}

func (a logAPI) CloseStream(_ context.Context, req logapi.CloseStreamRequestObject) (logapi.CloseStreamResponseObject, error) {
	p := req.Params
	closed := a.l.close(p.AccountID, p.Key, deref(p.Snapshot), deref(p.Prefix))
	a.s.log.Info("log streams closed", "account", p.AccountID, "key", p.Key, "prefix", deref(p.Prefix),
		"snapshot", deref(p.Snapshot), "closed", len(closed))
	return logapi.CloseStream204Response{}, nil
}

func (a logAPI) TailStream(ctx context.Context, req logapi.TailStreamRequestObject) (logapi.TailStreamResponseObject, error) {
	return logapi.TailStream200TexteventStreamResponse{Body: a.l.tail(ctx, req.Params.AccountID, req.Params.Key)}, nil
}

func (a logAPI) UploadBlob(_ context.Context, req logapi.UploadBlobRequestObject) (logapi.UploadBlobResponseObject, error) {
	body, err := readUpload(req.Body)
	if err == nil {
		err = a.l.store(req.Params.AccountID, req.Params.Key, BlobViaService, body)
	}
	if err != nil {
		return logapi.UploadBlob400JSONResponse{BadRequestJSONResponse: logError("upload of %s: %v", req.Params.Key, err)}, nil
	}
	a.s.log.Info("log uploaded", "account", req.Params.AccountID, "key", req.Params.Key, "via", BlobViaService, "bytes", len(body))
	return logapi.UploadBlob204Response{}, nil
}

func (a logAPI) UploadLink(ctx context.Context, req logapi.UploadLinkRequestObject) (logapi.UploadLinkResponseObject, error) {
	base, ok := ctx.Value(baseURLKey{}).(string)
	if !ok {
		return nil, errors.New("upload link: the request carries no base URL")
	}
	link, expires := a.l.link(base, req.Params.AccountID, req.Params.Key)
	raw, err := json.Marshal(expires.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("upload link: encode expiry: %w", err)
	}
	exp := json.RawMessage(raw)
	return logapi.UploadLink200JSONResponse{Link: link, Expires: &exp}, nil
}

func (a logAPI) StorageUpload(_ context.Context, req logapi.StorageUploadRequestObject) (logapi.StorageUploadResponseObject, error) {
	p := req.Params
	if why := a.l.checkLink(p.AccountID, p.Key, p.Expires, p.Signature); why != "" {
		a.s.log.Info("log upload link refused", "account", p.AccountID, "key", p.Key, "reason", why)
		return logapi.StorageUpload403JSONResponse{ErrorMsg: why}, nil
	}
	body, err := readUpload(req.Body)
	if err == nil {
		err = a.l.store(p.AccountID, p.Key, BlobViaLink, body)
	}
	if err != nil {
		return logapi.StorageUpload400JSONResponse{BadRequestJSONResponse: logError("upload of %s: %v", p.Key, err)}, nil
	}
	a.s.log.Info("log uploaded", "account", p.AccountID, "key", p.Key, "via", BlobViaLink, "bytes", len(body))
	return logapi.StorageUpload204Response{}, nil
}

func readUpload(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, nil // an empty log: the step printed nothing
	}
	body, err := io.ReadAll(io.LimitReader(r, maxUpload+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxUpload {
		return nil, fmt.Errorf("body is larger than %d bytes", maxUpload)
	}
	return body, nil
}

// baseURLKey carries the log service's base URL, as the client reached it, to the handlers that
// hand out links.
type baseURLKey struct{}

// withBaseURL puts the log service's base URL, as the client reached it, in the request context.
func withBaseURL(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		scheme := "http"
		if req.TLS != nil {
			scheme = "https"
		}
		base := scheme + "://" + req.Host + LogServicePath
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), baseURLKey{}, base)))
		return next(c)
	}
}

// The security schemes of the log service contract.
const (
	schemeTokenHeader = "HarnessToken"
	schemeTokenQuery  = "HarnessTokenQuery"
	schemeAPIKey      = "ApiKey"
)

// errNoToken marks a scheme whose token is absent, so a present but wrong token is what a refusal
// reports when there is one.
var errNoToken = errors.New("no token")

// authenticate checks one of the log service's security schemes: the token must be the mock's log
// token, and the account, when given, the mock manager's own.
func (l *logService) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	req := in.RequestValidationInput.Request
	var token string
	switch in.SecuritySchemeName {
	case schemeTokenHeader:
		token = req.Header.Get("X-Harness-Token")
	case schemeTokenQuery:
		token = req.URL.Query().Get("X-Harness-Token")
	case schemeAPIKey:
		token = req.Header.Get("x-api-key")
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	if token == "" {
		return errNoToken
	}
	if subtle.ConstantTimeCompare([]byte(token), l.token) != 1 {
		return &authError{reason: "the token is not valid"}
	}
	// A missing accountID is left to parameter validation, which names it.
	if acct := req.URL.Query().Get("accountID"); acct != "" && acct != l.account {
		return &authError{reason: fmt.Sprintf("the token is not valid for account %q", acct)}
	}
	return nil
}

// describeLogRequestError is describeRequestError for the log service: every refusal is a 400, as
// the service answers, and a missing token says where a token goes.
func describeLogRequestError(err error) (int, string) {
	var secErr *openapi3filter.SecurityRequirementsError
	if errors.As(err, &secErr) {
		for _, e := range secErr.Errors {
			var authErr *authError
			if errors.As(e, &authErr) {
				return http.StatusBadRequest, authErr.reason
			}
		}
		return http.StatusBadRequest, "no token: send it in the X-Harness-Token header (or query parameter) or the x-api-key header"
	}
	_, msg := describeRequestError(err)
	return http.StatusBadRequest, msg
}

func logRefusal(_ int, msg string) any { return logapi.Error{ErrorMsg: msg} }

// tail returns the server-sent events of a key's stream: the lines it holds, then each new one,
// then an eof event once it closes (or is opened afresh). It ends early when ctx ends.
func (l *logService) tail(ctx context.Context, account, key string) io.Reader {
	return &tailReader{ctx: ctx, l: l, id: storedKey(account, key)}
}

type tailReader struct {
	ctx  context.Context
	l    *logService
	id   string
	st   *logStream // the stream being followed, nil until found
	sent int
	buf  bytes.Buffer
	eof  bool
}

// Read returns the next events, waiting for new lines when none are pending. The generated
// handler flushes after every Read, so each event reaches the client as it happens.
func (t *tailReader) Read(p []byte) (int, error) {
	for t.buf.Len() == 0 {
		if t.eof {
			return 0, io.EOF
		}
		if err := t.fill(); err != nil {
			return 0, err
		}
	}
	return t.buf.Read(p)
}

// fill adds the pending events to buf, or waits for some.
func (t *tailReader) fill() error {
	t.l.mu.Lock()
	st := t.l.streams[t.id]
	if t.st == nil && st != nil && st.open {
		t.st = st
	}
	var pending []LogLine
	ended := t.st == nil || st != t.st || !st.open
	if t.st != nil {
		pending = t.st.lines[t.sent:]
	}
	changed := t.l.changed
	t.l.mu.Unlock()

	for _, line := range pending {
		b, err := json.Marshal(line)
		if err != nil {
			return fmt.Errorf("encode log line: %w", err)
		}
		t.buf.WriteString("data: ")
		t.buf.Write(b)
		t.buf.WriteString("\n\n")
	}
	t.sent += len(pending)
	if ended {
		t.buf.WriteString("event: eof\ndata: eof\n\n")
		t.eof = true
		return nil
	}
	if len(pending) > 0 {
		return nil
	}
	select {
	case <-t.ctx.Done():
		return t.ctx.Err()
	case <-changed:
		return nil
	}
}
