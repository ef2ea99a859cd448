package harnesslog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxAnswer caps how much of an error answer is read and quoted.
const maxAnswer = 4 << 10

// maxQuoted caps the part of an answer without an error_msg that an error quotes.
const maxQuoted = 200

// StatusError is a call the log service (or the storage behind an upload link) answered with a
// status other than 2xx.
type StatusError struct {
	// Call is the call that failed: "open stream", "write stream", "close stream", "upload blob",
	// "get upload link" or "upload to link <link without its query>".
	Call string
	// Key is the log key of the call.
	Key string
	// Status is the HTTP status of the answer.
	Status int
	// Message is the service's error_msg, or the start of the answer when it has none.
	Message string
}

// Error says which call failed, with the status and the service's message. It never holds the
// token: the token travels in a header, and is taken out of a message that quotes it.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("harness log service: %s %s: status %d %s", e.Call, e.Key, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Retryable reports whether the same call may succeed later: the service was unavailable (5xx)
// or asked the caller to slow down (429).
func (e *StatusError) Retryable() bool {
	return e.Status >= http.StatusInternalServerError || e.Status == http.StatusTooManyRequests
}

// Retryable reports whether err, from a Transport method, is worth trying again: an answer with a
// status that says so, or a call that got no answer at all (a refused or reset connection, a
// timeout of the call itself). It is false for a refusal (4xx), and when the caller's own context
// was cancelled. The errors themselves answer the same through a Retryable() bool method, for
// callers that do not import this package.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Retryable()
	}
	var ce *callError
	return errors.As(err, &ce) && ce.Retryable()
}

// callError is a call that got no answer.
type callError struct {
	call, key string
	err       error
}

func (e *callError) Error() string {
	return fmt.Sprintf("harness log service: %s %s: %v", e.call, e.key, e.err)
}

func (e *callError) Unwrap() error { return e.err }

// Retryable reports true unless the caller's own context was cancelled: a call that got no answer
// may get one later. Callers that know no transport can ask for this method.
func (e *callError) Retryable() bool { return !errors.Is(e.err, context.Canceled) }

func callFailed(call, key string, err error) error {
	return &callError{call: call, key: key, err: err}
}

// check turns a non-2xx answer into a StatusError, with the token taken out of its message.
func (t *Transport) check(call, key string, resp *http.Response, body []byte) error {
	if resp == nil {
		return &StatusError{Call: call, Key: key, Message: "no answer"}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := answerMessage(body)
	if t.token != "" {
		msg = strings.ReplaceAll(msg, t.token, "[token]")
	}
	return &StatusError{Call: call, Key: key, Status: resp.StatusCode, Message: msg}
}

// answerMessage is the error_msg of an answer, or the start of its text.
func answerMessage(body []byte) string {
	var e struct {
		ErrorMsg string `json:"error_msg"`
	}
	if json.Unmarshal(body, &e) == nil && e.ErrorMsg != "" {
		return e.ErrorMsg
	}
	text := strings.TrimSpace(string(body))
	if len(text) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "..."
	}
	return text
}
