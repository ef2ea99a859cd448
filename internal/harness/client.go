package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/google/wire"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/internal/manager"
)

// ProviderSet provides a *Client from Options and binds it as the runtime's manager.Manager.
var ProviderSet = wire.NewSet(New, wire.Bind(new(manager.Manager), new(*Client)))

var _ manager.Manager = (*Client)(nil)

const (
	// maxResponseBytes bounds how much of an answer is read; a task's data is the largest thing
	// the manager sends.
	maxResponseBytes = 64 << 20
	// maxErrorBody is how much of an error answer goes into the error text.
	maxErrorBody = 512
)

// Client is the Harness manager's delegate API as a manager.Manager. It is safe for concurrent
// use.
type Client struct {
	// api builds the requests. Its *WithResponse variants are not used: their parsers drop the
	// status and body when an error answer is not JSON, and ignore a 200 whose Content-Type is
	// not JSON, so answers are classified and decoded here instead.
	api     *gen.Client
	http    *http.Client
	account string
	secret  string
	tokens  *tokenSource
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// New checks opts and returns a Client. A setting that is missing or wrong is an error matching
// errs.ErrInvalidConfig that names the setting.
func New(opts Options) (*Client, error) {
	key, err := opts.validate()
	if err != nil {
		return nil, err
	}
	c := &Client{
		account: opts.AccountID,
		secret:  opts.AccountSecret,
		timeout: opts.Timeout,
		now:     opts.Now,
		log:     opts.Logger,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	newID := opts.NewID
	if newID == nil {
		newID = uuid.NewString
	}
	if c.tokens, err = newTokenSource(opts.Token, opts.AccountID, key, c.now, newID); err != nil {
		return nil, err
	}
	if c.http, err = opts.httpClient(c.log, c.timeout); err != nil {
		return nil, err
	}
	if c.api, err = gen.NewClient(opts.Endpoint, gen.WithHTTPClient(c.http)); err != nil {
		return nil, invalidConfig("DLITE_MANAGER_ENDPOINT: %v", err)
	}
	return c, nil
}

// CloseIdleConnections closes the kept-alive connections to the manager that are not in use.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// sendFunc sends one request through the generated client, applying edit to it.
type sendFunc func(ctx context.Context, edit gen.RequestEditorFn) (*http.Response, error)

// do sends a request with the Delegate authorization, reads the answer and classifies it. It
// returns the status and body of a 2xx answer; anything else is an *errs.Error named op.
func (c *Client) do(ctx context.Context, op string, send sendFunc) (int, []byte, error) {
	return c.doInto(ctx, op, nil, send)
}

// doInto is do reading the answer into buf's space when it is large enough.
func (c *Client) doInto(ctx context.Context, op string, buf []byte, send sendFunc) (int, []byte, error) {
	tok, err := c.tokens.token()
	if err != nil {
		return 0, nil, errs.Wrap(errs.CodeInvalidConfig, op, err)
	}
	callCtx := ctx
	if deadline, ok := ctx.Deadline(); !ok || time.Until(deadline) > c.timeout {
		// Callers on the hot path (acquire, report) bound each call already; a second context and
		// timer per call would change nothing.
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := send(callCtx, func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Delegate "+tok)
		// Set on bodyless calls too, as the reference client does: managers see the same headers.
		req.Header.Set("Content-Type", "application/json")
		return nil
	})
	if err != nil {
		return 0, nil, c.transportError(ctx, op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readBody(resp, buf)
	if err != nil {
		return 0, nil, c.transportError(ctx, op, err)
	}
	if len(body) > maxResponseBytes {
		return 0, nil, &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Status: resp.StatusCode,
			Message: fmt.Sprintf("answer larger than %d bytes", maxResponseBytes)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp.StatusCode, body, nil
	}
	e := &errs.Error{
		Code:    statusCode(resp.StatusCode),
		Op:      op,
		Status:  resp.StatusCode,
		Message: fmt.Sprintf("manager answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)),
	}
	if excerpt := c.excerpt(body, tok); excerpt != "" {
		e.Message += ": " + excerpt
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.now())
	}
	return 0, nil, e
}

// readBody reads an answer, at most maxResponseBytes+1 bytes of it, into buf when it has room.
// When the length is announced the body is read into a buffer of that size at once instead of
// one grown from 512 bytes, which spares every call a few allocations and copies.
func readBody(resp *http.Response, buf []byte) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= maxResponseBytes {
		// net/http stops the body at the announced length and reports an answer cut short as
		// io.ErrUnexpectedEOF, as io.ReadAll would.
		body := buf[:0]
		if int64(cap(buf)) >= n {
			body = buf[:n]
		} else {
			body = make([]byte, n)
		}
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return body, nil
	}
	r := io.LimitReader(resp.Body, maxResponseBytes+1)
	if cap(buf) == 0 {
		return io.ReadAll(r)
	}
	w := bytes.NewBuffer(buf[:0])
	_, err := w.ReadFrom(r)
	return w.Bytes(), err
}

// transportError classifies a failure to get an answer: the manager may be back later. The cause
// is kept, so errors.Is(err, context.Canceled) tells a call the caller abandoned from a manager
// that did not answer.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	e := errs.Wrap(errs.CodeManagerUnavailable, op, err)
	switch cause := ctx.Err(); {
	case cause != nil:
		e.Message = "call abandoned"
		if !errors.Is(err, cause) {
			e.Err = fmt.Errorf("%w: %w", cause, err)
		}
	case errors.Is(err, context.DeadlineExceeded):
		e.Message = fmt.Sprintf("no answer within %s", c.timeout)
	}
	return e
}

// statusCode maps a non-2xx HTTP status to the code of its failure.
func statusCode(status int) errs.Code {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return errs.CodeUnauthorized
	case status == http.StatusNotFound:
		return errs.CodeNotFound
	case status == http.StatusConflict:
		return errs.CodeAcquireConflict
	case status == http.StatusTooManyRequests || status >= 500:
		return errs.CodeManagerUnavailable
	default:
		// Redirects, which are never followed, and every other 4xx.
		return errs.CodeManagerRejected
	}
}

// retryAfter parses a Retry-After value, in seconds or as an HTTP date; 0 when absent or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > math.MaxInt64/int64(time.Second) {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// excerpt is the start of an answer's body for an error text, with the token and the secret
// blanked out in case the manager (or a proxy) echoes the request.
func (c *Client) excerpt(body []byte, tok string) string {
	return errs.Excerpt(body, maxErrorBody, tok, c.tokens.current(), c.secret)
}

// decode unmarshals a 2xx answer into v.
func (c *Client) decode(op string, status int, body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return malformed(op, status, "the answer is empty")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return c.undecodable(op, status, body, err)
	}
	return nil
}

// undecodable is the error of a 2xx answer that could not be decoded, with its start.
func (c *Client) undecodable(op string, status int, body []byte, err error) error {
	e := &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Status: status, Message: "undecodable answer", Err: err}
	if excerpt := c.excerpt(body, ""); excerpt != "" {
		e.Message += " " + strconv.Quote(excerpt)
	}
	return e
}

func malformed(op string, status int, msg string) error {
	return &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Status: status, Message: msg}
}

// isEmpty reports whether body carries no value: nothing, whitespace or JSON null.
func isEmpty(body []byte) bool {
	b := bytes.TrimSpace(body)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}
