package httptask

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks"
)

const (
	// DefaultBodyLimit is how much of a response body is returned: the first 64 KiB, as the task
	// spec promises.
	DefaultBodyLimit = 64 << 10
	// MaxRedirects is how many redirects NewClient's clients follow before failing the request.
	MaxRedirects = 10
	// drainLimit is how much of an unread body is discarded so the connection can be reused;
	// past it, closing the connection is cheaper than reading on.
	drainLimit = 64 << 10
)

// errRequestTimeout is the cause of a request that ran past the task's timeoutSeconds.
var errRequestTimeout = errors.New("request timed out")

// NewClient returns the client a Handler uses when none is given: proxies from the environment
// (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), 30s to connect, 10s for a TLS handshake, idle connections
// closed after 90s, and at most MaxRedirects redirects followed (net/http drops Authorization and
// Cookie headers when a redirect leaves the original host). It has no overall timeout: each
// request is bounded by its task's context and timeoutSeconds instead.
func NewClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   30 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: 1 * time.Second,
		},
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			return nil
		},
	}
}

// Handler runs HTTP_TASK. The zero value is ready to use and creates its client with NewClient
// on first use; a Handler must not be copied after that. It is safe for concurrent use.
type Handler struct {
	// Client sends the requests; a client from NewClient when nil. Its own settings apply as
	// they are, redirect policy included.
	Client *http.Client
	// BodyLimit is how many of the first bytes of a response body are returned;
	// DefaultBodyLimit when zero or negative.
	BodyLimit int

	once     sync.Once
	fallback *http.Client
}

// Run sends the request in req. The outcome is always a typed response: 200 with the response
// when its status is expected; 400 when the data cannot be sent as given; 422 with the response
// when its status is not expected; otherwise the default response with status 502 (the request
// failed or ctx ended; the message names method, URL and cause) or 504 (timeoutSeconds ran out).
// The error is reserved for bugs and is always nil today.
func (h *Handler) Run(ctx context.Context, req gentasks.HttpTaskRequestObject) (gentasks.HttpTaskResponseObject, error) {
	c, err := newCall(req.Body)
	if err != nil {
		return gentasks.HttpTask400JSONResponse{BadTaskJSONResponse: gentasks.BadTaskJSONResponse{Message: err.Error()}}, nil
	}
	log := tasks.Logger(ctx).With("method", c.method, "url", logURL(c.url))

	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.timeout > 0 {
		reqCtx, cancel = context.WithTimeoutCause(ctx, c.timeout, errRequestTimeout)
	}
	defer cancel()
	r, err := c.request(reqCtx)
	if err != nil {
		return gentasks.HttpTask400JSONResponse{BadTaskJSONResponse: gentasks.BadTaskJSONResponse{
			Message: fmt.Sprintf("%s: %v", c.target(), err),
		}}, nil
	}

	log.Debug("sending request")
	resp, err := h.client().Do(r)
	if err != nil {
		return failure(ctx, reqCtx, c, err), nil
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, h.bodyLimit())
	if err != nil {
		return failure(ctx, reqCtx, c, fmt.Errorf("reading the response body: %w", err)), nil
	}
	out := gentasks.HttpTaskOutput{Status: resp.StatusCode, Headers: joinHeaders(resp.Header), Body: body}
	log.Debug("got response", "status", resp.StatusCode)
	if !c.accepts(resp.StatusCode) {
		return gentasks.HttpTask422JSONResponse{
			Message: fmt.Sprintf("unexpected status %s (expected %s)", statusLine(resp.StatusCode), c.expectation()),
			Data:    out,
		}, nil
	}
	return gentasks.HttpTask200JSONResponse(out), nil
}

// CloseIdleConnections closes the idle keep-alive connections of the handler's client, for a
// runner that stops.
func (h *Handler) CloseIdleConnections() {
	h.client().CloseIdleConnections()
}

func (h *Handler) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	h.once.Do(func() { h.fallback = NewClient() })
	return h.fallback
}

func (h *Handler) bodyLimit() int {
	if h.BodyLimit > 0 {
		return h.BodyLimit
	}
	return DefaultBodyLimit
}

// failure turns a request that got no usable response into the default response. The task's
// own end (abort, shutdown, its timeout) is reported by its cause, the request's timeoutSeconds
// as a 504, anything else by the transport's error.
func failure(ctx, reqCtx context.Context, c call, err error) gentasks.HttpTaskResponseObject {
	status := http.StatusBadGateway
	var msg string
	switch {
	case ctx.Err() != nil:
		msg = context.Cause(ctx).Error()
	case errors.Is(context.Cause(reqCtx), errRequestTimeout):
		status = http.StatusGatewayTimeout
		msg = fmt.Sprintf("timed out after %s (timeoutSeconds)", c.timeout)
	default:
		// *url.Error repeats the method and URL that target already names.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg = err.Error()
	}
	return gentasks.HttpTaskdefaultJSONResponse{
		StatusCode: status,
		Body:       gentasks.TaskError{Message: c.target() + ": " + msg},
	}
}

// readBody returns the first limit bytes of r, reading no more than one byte past them, then
// discards a bounded rest so a small overrun does not cost the connection. A UTF-8 sequence cut
// in half by the limit is left out.
func readBody(r io.Reader, limit int) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return "", err
	}
	if len(data) > limit {
		data = trimCutRune(data[:limit])
		_, _ = io.CopyN(io.Discard, r, drainLimit)
	}
	return string(data), nil
}

// trimCutRune drops an incomplete UTF-8 sequence at the end of data.
func trimCutRune(data []byte) []byte {
	for i := 1; i < utf8.UTFMax && i <= len(data); i++ {
		if utf8.RuneStart(data[len(data)-i]) {
			if !utf8.FullRune(data[len(data)-i:]) {
				return data[:len(data)-i]
			}
			break
		}
	}
	return data
}

// joinHeaders flattens response headers, joining repeated ones with ", ".
func joinHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for name, values := range h {
		out[name] = strings.Join(values, ", ")
	}
	return out
}

// logURL is the URL as logged: scheme and host only. User information and query strings hold
// credentials, and so does the path of many webhook URLs.
func logURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}
