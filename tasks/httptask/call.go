package httptask

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
)

// Limits of the task's data, as the task spec states them.
const (
	// MaxTimeoutSeconds is the largest timeoutSeconds a task may give: one day.
	MaxTimeoutSeconds = 86400
	// MaxExpectedStatuses is how many statuses expectedStatus may list.
	MaxExpectedStatuses = 100
)

// userAgent is sent unless the task sets its own User-Agent header.
const userAgent = "dlite"

// call is a task's data after it has been checked: a request that can be sent as is.
type call struct {
	method   string
	url      *url.URL
	header   http.Header
	host     string // from a Host header, which net/http only honours on Request.Host
	body     *string
	timeout  time.Duration // zero: only the task's context bounds the request
	expected []int         // empty: any 2xx
}

// newCall checks data again even though the runtime validated it against the schema: the
// handler can be called by other code, and a malformed header would otherwise surface as a
// transport failure instead of a bad task. Its errors are ErrInvalidTaskData.
func newCall(data *gentasks.HttpTaskData) (call, error) {
	if data == nil {
		return call{}, invalid("the task has no data")
	}
	u, err := url.Parse(data.Url)
	if err != nil {
		return call{}, invalid("url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return call{}, invalid("url %q is not an http or https URL", u.Redacted())
	}
	if u.Hostname() == "" {
		return call{}, invalid("url %q has no host", u.Redacted())
	}
	c := call{method: http.MethodGet, url: u, header: http.Header{}, body: data.Body}
	if data.Method != nil {
		if !data.Method.Valid() {
			return call{}, invalid("method %q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", *data.Method)
		}
		c.method = string(*data.Method)
	}
	if data.Headers != nil {
		for name, value := range *data.Headers {
			if !httpguts.ValidHeaderFieldName(name) {
				return call{}, invalid("headers: %q is not a valid header name", name)
			}
			// The value is not quoted back: it may be a credential.
			if !httpguts.ValidHeaderFieldValue(value) {
				return call{}, invalid("headers: the value of %s contains a control character", name)
			}
			if http.CanonicalHeaderKey(name) == "Host" {
				c.host = value
				continue
			}
			c.header.Add(name, value)
		}
	}
	if c.header.Get("User-Agent") == "" {
		c.header.Set("User-Agent", userAgent)
	}
	if data.TimeoutSeconds != nil {
		s := *data.TimeoutSeconds
		if s < 1 || s > MaxTimeoutSeconds {
			return call{}, invalid("timeoutSeconds %d is not between 1 and %d", s, MaxTimeoutSeconds)
		}
		c.timeout = time.Duration(s) * time.Second
	}
	if data.ExpectedStatus != nil {
		if len(*data.ExpectedStatus) > MaxExpectedStatuses {
			return call{}, invalid("expectedStatus lists %d statuses, at most %d are allowed",
				len(*data.ExpectedStatus), MaxExpectedStatuses)
		}
		for _, s := range *data.ExpectedStatus {
			if s < 100 || s > 599 {
				return call{}, invalid("expectedStatus: %d is not an HTTP status", s)
			}
		}
		c.expected = *data.ExpectedStatus
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return errs.Newf(errs.CodeInvalidTaskData, "", format, args...)
}

// request builds the request to send under ctx.
func (c call) request(ctx context.Context) (*http.Request, error) {
	var body io.Reader
	if c.body != nil {
		// A strings.Reader lets net/http set Content-Length and replay the body on a 307 or
		// 308 redirect.
		body = strings.NewReader(*c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header = c.header.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	return req, nil
}

// accepts reports whether status is a success for this call.
func (c call) accepts(status int) bool {
	if len(c.expected) == 0 {
		return status >= 200 && status <= 299
	}
	for _, s := range c.expected {
		if s == status {
			return true
		}
	}
	return false
}

// expectation says which statuses are a success, for failure messages: "2xx" or "200, 201".
func (c call) expectation() string {
	if len(c.expected) == 0 {
		return "2xx"
	}
	parts := make([]string, len(c.expected))
	for i, s := range c.expected {
		parts[i] = strconv.Itoa(s)
	}
	return strings.Join(parts, ", ")
}

// target names the request in failure messages: method and URL, without a password.
func (c call) target() string {
	return c.method + " " + c.url.Redacted()
}

// statusLine reads like "500 Internal Server Error", or just "599" for an unnamed status.
func statusLine(code int) string {
	return strings.TrimSpace(fmt.Sprintf("%d %s", code, http.StatusText(code)))
}
