package mockmanager

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/dlite-dev/dlite/internal/httprec"
)

// contract validates the requests and responses of one API against its OpenAPI document.
type contract struct {
	name   string
	spec   *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options
	log    *slog.Logger
	// prefix is the path the API is mounted under on the mock's server; it is not in the
	// contract's paths, so it is taken off before a request is routed.
	prefix string
	// describe turns a request validation failure into a status and a message.
	describe func(error) (int, string)
	// refusal is the contract's error body for a status and a message, which refuse and replace
	// answer with unless the API answers otherwise.
	refusal func(status int, msg string) any
	// streaming are the operations whose responses are written as they are produced (server-sent
	// events): their requests are validated, their responses cannot be held back and are not.
	streaming map[string]bool

	// What differs from one API to the next in how the mock answers: the real servers fail bad
	// requests each their own way, and their clients depend on it.

	// refuse logs and answers a request of operation that does not fit the contract, given the
	// status and message describe made of the failure.
	refuse func(ec echo.Context, operation string, status int, msg string) error
	// replace logs and answers, in place of the handler's response of the given status, a
	// response that violates the contract in the way err says.
	replace func(ec echo.Context, operation string, status int, err error) error
	// finish, when set, rewrites the headers of a response that fits the contract before it is
	// written; status is the response's.
	finish func(h http.Header, status int)
}

func newContract(name string, spec *openapi3.T, auth openapi3filter.AuthenticationFunc, log *slog.Logger) (*contract, error) {
	// The documented servers name the real manager's host; requests here come to any host.
	spec.Servers = nil
	router, err := gorillamux.NewRouter(spec)
	if err != nil {
		return nil, fmt.Errorf("route %s contract: %w", name, err)
	}
	c := &contract{
		name:   name,
		spec:   spec,
		router: router,
		opts: &openapi3filter.Options{
			AuthenticationFunc: auth,
			// The generated handlers bind the value that was validated instead of decoding again.
			KeepValidatedValue: true,
			// A status the contract does not list is a bug of the mock, like a malformed body.
			IncludeResponseStatus: true,
		},
		log:      log,
		describe: describeRequestError,
		refusal: func(status int, msg string) any {
			return apiError{Code: codeFor(status), Message: msg}
		},
	}
	c.refuse, c.replace = c.refuseWithErrorBody, c.replaceWithErrorBody
	return c, nil
}

// refuseWithErrorBody answers a refused request with the contract's error body.
func (c *contract) refuseWithErrorBody(ec echo.Context, operation string, status int, msg string) error {
	c.log.Info("request refused", "api", c.name, "operation", operation, "status", status, "reason", msg)
	return ec.JSON(status, c.refusal(status, msg))
}

// replaceWithErrorBody answers a 500 with the contract's error body (coded invalid_response when
// the body has a code) in place of a response that violates the contract.
func (c *contract) replaceWithErrorBody(ec echo.Context, operation string, status int, err error) error {
	c.log.Error("response violates the contract", "api", c.name, "operation", operation, "status", status, "error", err)
	msg := fmt.Sprintf("the mock manager produced a %d response that violates the %s contract: %v", status, c.name, err)
	body := c.refusal(http.StatusInternalServerError, msg)
	if e, ok := body.(apiError); ok {
		e.Code = "invalid_response"
		body = e
	}
	return ec.JSON(http.StatusInternalServerError, body)
}

// operations returns the operation ids of the contract.
func (c *contract) operations() []string {
	var ids []string
	for _, item := range c.spec.Paths.Map() {
		for _, op := range item.Operations() {
			ids = append(ids, op.OperationID)
		}
	}
	return ids
}

// middleware validates the request, answering it with refuse (by default a 400 naming what is
// wrong, or a 401) without calling the handler when it does not fit; then it holds the handler's
// response back until that too is validated. A response that does not fit the contract is
// replaced (by default by a 500) and logged: the mock must never teach a client something the
// real server would not send. A response that fits leaves as it is, but for what finish rewrites.
func (c *contract) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		req := c.routed(ec.Request())
		route, params, err := c.router.FindRoute(req)
		if err != nil {
			return fmt.Errorf("%s contract has no route for %s %s: %w", c.name, req.Method, req.URL.Path, err)
		}
		operation := route.Operation.OperationID
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}
		validErr := openapi3filter.ValidateRequest(req.Context(), in)
		// Validation may have replaced the body (to read it again, or to keep the validated value).
		ec.Request().Body = req.Body
		refuse := func() error {
			status, msg := c.describe(validErr)
			return c.refuse(ec, operation, status, msg)
		}
		if c.streaming[operation] {
			if validErr != nil {
				return refuse()
			}
			return next(ec)
		}

		res := ec.Response()
		out := res.Writer
		rec := httprec.New()
		res.Writer = rec
		if validErr != nil {
			if err := refuse(); err != nil {
				ec.Error(err)
			}
		} else if err := next(ec); err != nil {
			ec.Error(err)
		}
		res.Writer = out
		res.Committed, res.Status, res.Size = false, 0, 0

		resIn := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in,
			Status:                 rec.Status(),
			Header:                 rec.Header(),
			Options:                c.opts,
		}
		if err := openapi3filter.ValidateResponse(req.Context(), resIn.SetBodyBytes(rec.Body())); err != nil {
			return c.replace(ec, operation, rec.Status(), err)
		}
		for k, v := range rec.Header() {
			res.Header()[k] = v
		}
		if c.finish != nil {
			c.finish(res.Header(), rec.Status())
		}
		res.WriteHeader(rec.Status())
		_, err = res.Write(rec.Body())
		return err
	}
}

// routed returns the request as the contract sees it: with the mount prefix taken off its path.
// The copy shares the body; the caller takes the body back from it after validation.
func (c *contract) routed(req *http.Request) *http.Request {
	if c.prefix == "" {
		return req
	}
	r := *req
	u := *req.URL
	u.Path = strings.TrimPrefix(u.Path, c.prefix)
	u.RawPath = strings.TrimPrefix(u.RawPath, c.prefix)
	r.URL = &u
	return &r
}

// describeRequestError turns a validation failure into a status and a message that names the
// parameter or body field at fault.
func describeRequestError(err error) (int, string) {
	var authErr *authError
	if errors.As(err, &authErr) {
		return http.StatusUnauthorized, authErr.reason
	}
	var secErr *openapi3filter.SecurityRequirementsError
	if errors.As(err, &secErr) {
		return http.StatusUnauthorized, secErr.Error()
	}
	var reqErr *openapi3filter.RequestError
	if !errors.As(err, &reqErr) {
		return http.StatusBadRequest, err.Error()
	}
	switch {
	case reqErr.Parameter != nil:
		return http.StatusBadRequest, fmt.Sprintf("%s parameter %s: %s", reqErr.Parameter.In, reqErr.Parameter.Name, reason(reqErr))
	case reqErr.RequestBody != nil:
		return http.StatusBadRequest, "request body: " + reason(reqErr)
	default:
		return http.StatusBadRequest, reqErr.Error()
	}
}

// reason says what is wrong, naming the body field by its path ("tags/0") when there is one, and
// leaving out the schema dump kin-openapi appends to its messages.
func reason(reqErr *openapi3filter.RequestError) string {
	var schemaErr *openapi3.SchemaError
	if errors.As(reqErr.Err, &schemaErr) {
		msg := schemaErr.Reason
		if msg == "" {
			msg = "does not match the schema"
		}
		if path := schemaErr.JSONPointer(); len(path) > 0 {
			return fmt.Sprintf("field %s: %s", strings.Join(path, "/"), msg)
		}
		return msg
	}
	switch {
	case reqErr.Err == nil:
		return reqErr.Reason
	case reqErr.Reason == "" || reqErr.Reason == reqErr.Err.Error():
		return reqErr.Err.Error()
	default:
		return reqErr.Reason + ": " + reqErr.Err.Error()
	}
}
