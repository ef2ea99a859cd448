package drone

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/dlite-dev/dlite/errs"
	gen "github.com/dlite-dev/dlite/gen/drone"
)

// The wire types, under the names the rest of dlite uses.
type (
	// Filter says which stages a runner takes.
	Filter = gen.Filter
	// Stage is one stage of a build.
	Stage = gen.Stage
	// Step is one step of a stage.
	Step = gen.Step
	// Line is one line of a step's log.
	Line = gen.Line
	// Details is everything needed to run a stage.
	Details = gen.Details
	// Secret is a secret a stage may read.
	Secret = gen.Secret
	// CardInput is a step's card.
	CardInput = gen.CardInput
	// Status is the state of a build, stage or step.
	Status = gen.Status
)

const (
	// maxResponseBytes bounds how much of an answer is read; the details of a stage (its YAML
	// and secrets) are the largest thing a Drone server sends.
	maxResponseBytes = 64 << 20
	// maxErrorBody is how much of an error answer goes into the error text.
	maxErrorBody = 512
	// tokenHeader carries the RPC secret on every call.
	tokenHeader = "X-Drone-Token"
)

// ErrOptimisticLock is the cause of every 409 answer: the stage was accepted by another runner,
// or the version sent is not the stored one (the server's canceller, say, saved the stage or
// step first). Test for it with errors.Is; the *errs.Error around it has the code
// errs.CodeAcquireConflict.
var ErrOptimisticLock = errors.New("optimistic lock error")

// ErrCardsUnsupported is the cause of the error UploadCard returns when the server predates cards
// (it answers 404 for the route).
var ErrCardsUnsupported = errors.New("the Drone server does not support cards")

// Options configures a Client. Endpoint and Secret are required.
type Options struct {
	// Endpoint is the server's base URL, "<DRONE_RPC_PROTO>://<DRONE_RPC_HOST>", with no path:
	// the /rpc/v2 paths are appended to it.
	Endpoint string
	// Secret is the shared RPC secret (DRONE_RPC_SECRET), sent as X-Drone-Token. It is never
	// logged or put in an error.
	Secret string
	// InsecureSkipVerify turns off verification of the server's certificate
	// (DRONE_RPC_SKIP_VERIFY). New logs a warning when it is set.
	InsecureSkipVerify bool
	// Transport replaces the default transport (which takes its proxy from the environment).
	// InsecureSkipVerify is then ignored.
	Transport http.RoundTripper
	// Logger receives the client's warnings. Nil discards them.
	Logger *slog.Logger
}

// Client makes the runner RPC v2 calls. It has no timeout of its own: each call is bounded by
// its context alone, since the long polls legitimately last 30 s. It is safe for concurrent use.
type Client struct {
	api    *gen.ClientWithResponses
	http   *http.Client
	secret string
	log    *slog.Logger
}

// New checks opts and returns a Client. A missing or malformed setting is an error matching
// errs.ErrInvalidConfig that names the setting.
func New(opts Options) (*Client, error) {
	const op = "configure Drone client"
	u, err := url.Parse(opts.Endpoint)
	switch {
	case opts.Endpoint == "":
		return nil, errs.New(errs.CodeInvalidConfig, op, "the endpoint is missing: set DRONE_RPC_HOST (and DRONE_RPC_PROTO)")
	case err != nil:
		return nil, errs.Newf(errs.CodeInvalidConfig, op, "the endpoint %q is not a URL: %v", opts.Endpoint, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errs.Newf(errs.CodeInvalidConfig, op, "the endpoint %q must start with http:// or https:// (DRONE_RPC_PROTO is http or https)", opts.Endpoint)
	case u.Host == "":
		return nil, errs.Newf(errs.CodeInvalidConfig, op, "the endpoint %q has no host (DRONE_RPC_HOST)", opts.Endpoint)
	case opts.Secret == "":
		return nil, errs.New(errs.CodeInvalidConfig, op, "the RPC secret is missing: set DRONE_RPC_SECRET")
	}
	c := &Client{secret: opts.Secret, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if opts.InsecureSkipVerify {
			c.log.Warn("TLS certificate verification of the Drone server is off (DRONE_RPC_SKIP_VERIFY); use this only against a test server")
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by the operator
		}
		rt = t
	}
	c.http = &http.Client{
		Transport: jsonAnswers{next: rt},
		// The server never redirects; a redirect (from a proxy, say) is an answer to report,
		// not to follow with the secret attached.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.api, err = gen.NewClientWithResponses(strings.TrimRight(opts.Endpoint, "/"),
		gen.WithHTTPClient(c.http),
		gen.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set(tokenHeader, c.secret)
			return nil
		}))
	if err != nil {
		return nil, errs.Newf(errs.CodeInvalidConfig, op, "the endpoint %q: %v", opts.Endpoint, err)
	}
	return c, nil
}

// CloseIdleConnections closes the kept-alive connections to the server that are not in use.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// jsonAnswers labels the body of every 2xx answer as JSON, because Drone servers send JSON with
// no Content-Type (Go then sniffs text/plain) and the generated decoders look at the label. It
// also bounds how much of any answer can be read.
type jsonAnswers struct{ next http.RoundTripper }

func (j jsonAnswers) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := j.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 && resp.StatusCode != http.StatusNoContent {
		resp.Header.Set("Content-Type", "application/json")
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, maxResponseBytes+1), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// answer is what every generated response has in common.
type answer interface {
	StatusCode() int
	GetBody() []byte
}

// check turns a failed call or a non-2xx answer into an *errs.Error named op, and returns nil
// for a 2xx answer.
func (c *Client) check(ctx context.Context, op string, res answer, err error) error {
	if err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			// The generated parser failed on a 2xx answer that is not the contract's JSON.
			return &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Message: "undecodable answer", Err: err}
		}
		return c.transportError(ctx, op, err)
	}
	status, body := res.StatusCode(), res.GetBody()
	if len(body) > maxResponseBytes {
		return &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Status: status,
			Message: fmt.Sprintf("answer larger than %d bytes", maxResponseBytes)}
	}
	if status >= 200 && status <= 299 {
		return nil
	}
	e := &errs.Error{Op: op, Status: status}
	text := c.excerpt(body)
	switch {
	case status == http.StatusConflict:
		e.Code, e.Err = errs.CodeAcquireConflict, ErrOptimisticLock
	case status == http.StatusUnauthorized:
		e.Code = errs.CodeUnauthorized
		e.Message = "the Drone server refused the RPC secret (401): X-Drone-Token is not its DRONE_RPC_SECRET"
	case status == http.StatusForbidden:
		e.Code = errs.CodeUnauthorized
		e.Message = "the Drone server refused the RPC secret (403): the server has no DRONE_RPC_SECRET configured"
	case status == http.StatusNotFound:
		e.Code = errs.CodeNotFound
		e.Message = "the Drone server answered 404: " + orStatusText(text, status)
	case status == http.StatusTooManyRequests || status >= http.StatusBadGateway:
		e.Code = errs.CodeManagerUnavailable
		e.Message = fmt.Sprintf("the Drone server answered %d: %s", status, orStatusText(text, status))
	default:
		// 500 is how the server reports every real failure (not found, bad JSON, a second
		// upload), so it is permanent, like 501, redirects and the other 4xx.
		e.Code = errs.CodeManagerRejected
		e.Message = fmt.Sprintf("the Drone server answered %d: %s", status, orStatusText(text, status))
	}
	return e
}

func orStatusText(text string, status int) string {
	if text != "" {
		return text
	}
	return http.StatusText(status)
}

// transportError classifies a failure to get an answer: the server may be back later. The cause
// is kept, so errors.Is(err, context.Canceled) tells a call the caller abandoned.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	e := errs.Wrap(errs.CodeManagerUnavailable, op, err)
	if cause := ctx.Err(); cause != nil {
		e.Message = "call abandoned"
		if !errors.Is(err, cause) {
			e.Err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	return e
}

// excerpt is the start of an error answer's body, with the secret blanked out in case a proxy
// echoes the request.
func (c *Client) excerpt(body []byte) string {
	return errs.Excerpt(body, maxErrorBody, c.secret)
}

// decoded returns v, or a malformed-answer error when the generated client could not decode a
// 200 answer (an empty body, say).
func decoded[T any](op string, status int, body []byte, v *T) (T, error) {
	if v == nil {
		var zero T
		msg := "the answer is not JSON"
		if len(bytes.TrimSpace(body)) == 0 {
			msg = "the answer is empty"
		}
		return zero, &errs.Error{Code: errs.CodeMalformedResponse, Op: op, Status: status, Message: msg}
	}
	return *v, nil
}
