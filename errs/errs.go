package errs

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Code names a kind of failure. Codes are stable strings, safe to log, count and compare.
type Code string

// The codes of every failure dlite reports.
const (
	// CodeUnknown is the code of an error that is not an *Error.
	CodeUnknown Code = "unknown"
	// CodeInvalidConfig: a setting is missing or wrong; the runner refuses to start.
	CodeInvalidConfig Code = "invalid_config"
	// CodeInvalidTaskData: a task's data does not match its task type's schema.
	CodeInvalidTaskData Code = "invalid_task_data"
	// CodeTaskTooLarge: a task's data is larger than the configured limit.
	CodeTaskTooLarge Code = "task_too_large"
	// CodeUnsupportedTaskType: no handler is registered for the task type.
	CodeUnsupportedTaskType Code = "unsupported_task_type"
	// CodeHandlerFailed: the handler ran and reported a failure.
	CodeHandlerFailed Code = "handler_failed"
	// CodePanic: the handler panicked.
	CodePanic Code = "panic"
	// CodeTimeout: the task ran past its deadline.
	CodeTimeout Code = "timeout"
	// CodeAborted: the manager aborted the task.
	CodeAborted Code = "aborted"
	// CodeShuttingDown: the runner stopped the task because it is shutting down.
	CodeShuttingDown Code = "shutting_down"
	// CodeInterrupted: the runner stopped (a crash, a kill) while the task ran; a restarted runner
	// answers the task with it when its manager would otherwise wait for it forever.
	CodeInterrupted Code = "interrupted"
	// CodeAcquireConflict: another runner acquired the task first. Normal under competition.
	CodeAcquireConflict Code = "acquire_conflict"
	// CodeManagerUnavailable: the manager could not be reached or answered 5xx or 429. Retryable.
	CodeManagerUnavailable Code = "manager_unavailable"
	// CodeManagerRejected: the manager answered a 4xx other than 401, 404, 409 and 429. Permanent.
	CodeManagerRejected Code = "manager_rejected"
	// CodeUnauthorized: the manager refused the credentials (401 or 403). Permanent.
	CodeUnauthorized Code = "unauthorized"
	// CodeNotFound: the manager does not know the delegate or task (404). Permanent.
	CodeNotFound Code = "not_found"
	// CodeMalformedResponse: the manager's answer could not be decoded. Permanent.
	CodeMalformedResponse Code = "malformed_response"
	// CodeExpired: a result was kept past its expiry without the manager accepting it.
	CodeExpired Code = "expired"
)

// Sentinels, one per code. Compare with errors.Is: any *Error with the same code matches.
var (
	ErrInvalidConfig       = sentinel(CodeInvalidConfig, "invalid configuration")
	ErrInvalidTaskData     = sentinel(CodeInvalidTaskData, "invalid task data")
	ErrTaskTooLarge        = sentinel(CodeTaskTooLarge, "task data too large")
	ErrUnsupportedTaskType = sentinel(CodeUnsupportedTaskType, "unsupported task type")
	ErrHandlerFailed       = sentinel(CodeHandlerFailed, "task failed")
	ErrPanic               = sentinel(CodePanic, "task handler panicked")
	ErrTimeout             = sentinel(CodeTimeout, "task timed out")
	ErrAborted             = sentinel(CodeAborted, "task aborted by the manager")
	ErrShuttingDown        = sentinel(CodeShuttingDown, "runner shutting down")
	ErrInterrupted         = sentinel(CodeInterrupted, "the runner stopped while the task ran; it was not finished")
	ErrAcquireConflict     = sentinel(CodeAcquireConflict, "task acquired by another runner")
	ErrManagerUnavailable  = sentinel(CodeManagerUnavailable, "manager unavailable")
	ErrManagerRejected     = sentinel(CodeManagerRejected, "manager rejected the request")
	ErrUnauthorized        = sentinel(CodeUnauthorized, "manager refused the credentials")
	ErrNotFound            = sentinel(CodeNotFound, "not found on the manager")
	ErrMalformedResponse   = sentinel(CodeMalformedResponse, "malformed manager response")
	ErrExpired             = sentinel(CodeExpired, "result expired before the manager accepted it")
)

// Error is a failure with a Code. Op says what was being done ("acquire task t-1"), Message what
// went wrong, and Err the cause, if any.
type Error struct {
	Code    Code
	Op      string
	Message string
	// Status is the HTTP status the manager answered with, or 0.
	Status int
	// RetryAfter is the wait the manager asked for (Retry-After on 429 and 503), or 0.
	RetryAfter time.Duration
	Err        error
}

func sentinel(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// New returns an *Error with the given code, operation and message.
func New(code Code, op, msg string) *Error { return &Error{Code: code, Op: op, Message: msg} }

// Newf is New with a formatted message.
func Newf(code Code, op, format string, args ...any) *Error {
	return &Error{Code: code, Op: op, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the given code and operation whose cause is err.
func Wrap(code Code, op string, err error) *Error { return &Error{Code: code, Op: op, Err: err} }

// Error reads "op: message: cause", leaving out the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	add := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(s)
	}
	add(e.Op)
	add(e.Message)
	if e.Err != nil {
		add(e.Err.Error())
	}
	if b.Len() == 0 {
		return string(e.Code)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code, so an error matches its sentinel.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Retryable reports whether trying the same thing again later may succeed.
func (e *Error) Retryable() bool { return e.Code == CodeManagerUnavailable }

// CodeOf returns the code of the first *Error in err's chain, CodeUnknown if there is none, and ""
// for a nil error.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnknown
}

// Retryable reports whether err is worth trying again: a manager that could not be reached or
// answered 5xx or 429. Everything else, including every other 4xx, is permanent.
func Retryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable()
}

// RetryAfter returns the wait the manager asked for in err's chain, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Redacted replaces a credential in the text Excerpt makes of an answer.
const Redacted = "[redacted]"

// Excerpt is the start of an answer's body for an error text: valid UTF-8, trimmed, every
// non-empty hidden string (a token, a secret, in case the server or a proxy echoes the request)
// replaced by Redacted, and cut to at most max bytes on a character boundary, marked "…".
func Excerpt(body []byte, max int, hidden ...string) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
	for _, h := range hidden {
		if h != "" {
			s = strings.ReplaceAll(s, h, Redacted)
		}
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
