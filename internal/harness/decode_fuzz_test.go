package harness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/harness"
)

// fuzzStatuses are the statuses a fuzzed manager answers with, picked by a fuzzed byte.
var fuzzStatuses = []int{200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503}

func fuzzStatus(b byte) int { return fuzzStatuses[int(b)%len(fuzzStatuses)] }

// answering is a manager that answers every call with what the fuzz function last set.
type answering struct {
	mu         sync.Mutex
	status     int
	body       []byte
	retryAfter string
	echo       bool
}

func (a *answering) set(status int, body []byte, retryAfter string, echo bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status, a.body, a.retryAfter, a.echo = status, body, retryAfter, echo
}

func (a *answering) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	a.mu.Lock()
	status, body, retryAfter, echo := a.status, a.body, a.retryAfter, a.echo
	a.mu.Unlock()
	if echo {
		// A manager or proxy that repeats the credentials it got in its error text.
		body = bytes.Join([][]byte{body, []byte(r.Header.Get("Authorization")), []byte(testSecret), body}, []byte(" "))
	}
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// fuzzClient starts an answering manager for a fuzz target and returns a client of it.
func fuzzClient(f *testing.F) (*answering, *harness.Client) {
	f.Helper()
	a := &answering{status: http.StatusOK}
	srv := httptest.NewServer(a)
	f.Cleanup(srv.Close)
	c, err := harness.New(harness.Options{
		Endpoint:      srv.URL + prefix,
		AccountID:     testAccount,
		AccountSecret: testSecret,
		Timeout:       30 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	})
	require.NoError(f, err)
	f.Cleanup(c.CloseIdleConnections)
	return a, c
}

// requireClassified checks the error of a call answered with status: 2xx answers fail only as
// malformed (or, for acquires, as a conflict), the others with the code of their status, and the
// error text carries no credential.
func requireClassified(t *testing.T, status int, err error, twoXX ...errs.Code) {
	t.Helper()
	require.Error(t, err)
	code := errs.CodeOf(err)
	switch {
	case status >= 200 && status <= 299:
		require.Contains(t, append([]errs.Code{errs.CodeMalformedResponse}, twoXX...), code, "%v", err)
		require.False(t, errs.Retryable(err))
	case status == http.StatusTooManyRequests || status >= 500:
		require.Equal(t, errs.CodeManagerUnavailable, code)
		require.True(t, errs.Retryable(err))
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		require.Equal(t, errs.CodeUnauthorized, code)
	case status == http.StatusNotFound:
		require.Equal(t, errs.CodeNotFound, code)
	case status == http.StatusConflict:
		require.Equal(t, errs.CodeAcquireConflict, code)
	default:
		require.Equal(t, errs.CodeManagerRejected, code)
	}
	require.NotContains(t, err.Error(), testSecret)
	require.NotContains(t, err.Error(), "eyJhbGciOiJkaXIi")
}

// FuzzPollAnswer feeds arbitrary task-events answers to Poll: it never panics, fails only as its
// status says (a 2xx only as malformed), and every event it returns names a task.
func FuzzPollAnswer(f *testing.F) {
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"accountId":"a","delegateTaskId":"t-1","sync":false,"taskType":"SHELL_SCRIPT_TASK"}]}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"eventType":"DelegateTaskAbortEvent","delegateTaskId":"t-2"},{"eventType":"Other","delegateTaskId":"x"}]}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"delegateTaskId":""},{"delegateTaskId":7},"text",null,[]]}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":null}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":{}}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[`))
	f.Add(byte(0), []byte(`null`))
	f.Add(byte(0), []byte(``))
	f.Add(byte(0), []byte(`[]`))
	f.Add(byte(2), []byte(``))
	f.Add(byte(8), []byte(`{"code":"busy"}`))
	f.Add(byte(0), []byte(`{"DelegateTaskEvents":[{"delegate\u0054askId":"t-\u00e9","TASKTYPE":"X","sync":null,"sync":true}]}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"delegateTaskId":"a"}],"delegateTaskEvents":[{"delegateTaskId":"b","x":[{"y":-1.5e3}]}]} `))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"delegateTaskId":"a"}]}{}`))
	f.Add(byte(0), []byte(`{"delegateTaskEvents":[{"delegateTaskId":"a","eventType":5},{"delegateTaskId":"b","taskType":[]}]}`))
	a, c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, statusByte byte, body []byte) {
		status := fuzzStatus(statusByte)
		a.set(status, body, "", false)
		events, err := c.Poll(context.Background(), "del-1")
		if status >= 200 && status <= 299 && status != http.StatusNoContent && !json.Valid(body) && !isBlank(body) {
			require.ErrorIs(t, err, errs.ErrMalformedResponse, "an answer that is not JSON got through")
		}
		if err != nil {
			requireClassified(t, status, err)
			return
		}
		require.True(t, status >= 200 && status <= 299, "status %d accepted", status)
		for _, ev := range events {
			require.NotEmpty(t, ev.TaskID, "an event without a task id got through")
		}
	})
}

// isBlank reports whether body is nothing but whitespace, which Poll takes for no events.
func isBlank(body []byte) bool { return len(bytes.TrimSpace(body)) == 0 }

// FuzzAcquireAnswer feeds arbitrary acquire answers to Acquire: it never panics, fails only as
// its status says (a 2xx only as malformed or, when empty, as a conflict), and a task it returns
// has an id, a type, a sane timeout and the answer as its raw form.
func FuzzAcquireAnswer(f *testing.F) {
	f.Add(byte(0), []byte(`{"id":"t-1","type":"SHELL_SCRIPT_TASK","data":{"script":"echo hi"},"async":true,"runnerResponse":false,"timeout":30,`+
		`"logging":{"token":"lt","abstractions":{"a":"b"}},"delegate":{"id":"d","instance_id":"i","token":"dt"},"capabilities":[]}`))
	f.Add(byte(0), []byte(`{"id":"t-1","type":"SLEEP_TASK","data":null,"timeout":-5}`))
	f.Add(byte(0), []byte(`{"id":"t-1","type":"SLEEP_TASK","timeout":9223372036854775807}`))
	f.Add(byte(0), []byte(`{"id":"","type":"X"}`))
	f.Add(byte(0), []byte(`{"id":1,"type":[]}`))
	f.Add(byte(0), []byte(`{"id":"t-1","type":"X","logging":"no","delegate":7}`))
	f.Add(byte(0), []byte(`{"id":"t-1"`))
	f.Add(byte(0), []byte(`null`))
	f.Add(byte(2), []byte(``))
	f.Add(byte(7), []byte(`{"code":"conflict","message":"taken"}`))
	a, c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, statusByte byte, body []byte) {
		status := fuzzStatus(statusByte)
		a.set(status, body, "", false)
		task, err := c.Acquire(context.Background(), "del-1", "t-1")
		if err != nil {
			requireClassified(t, status, err, errs.CodeAcquireConflict)
			if status == http.StatusNoContent {
				require.ErrorIs(t, err, errs.ErrAcquireConflict)
			}
			return
		}
		require.True(t, status >= 200 && status <= 299 && status != http.StatusNoContent, "status %d accepted", status)
		require.NotEmpty(t, task.ID)
		require.NotEmpty(t, task.Type)
		require.GreaterOrEqual(t, task.Timeout, time.Duration(0))
		require.Equal(t, body, []byte(task.Raw))
		if len(task.Data) > 0 {
			require.True(t, json.Valid(task.Data), "task data %q is not JSON", task.Data)
		}
	})
}

// FuzzErrorTextHidesCredentials has a broken manager repeat the request's Authorization header
// and the account secret inside arbitrary error text: the error the caller gets never carries
// either.
func FuzzErrorTextHidesCredentials(f *testing.F) {
	f.Add(byte(3), []byte(`rejected`))
	f.Add(byte(9), []byte(strings.Repeat("x", 500)))
	f.Add(byte(4), []byte("\xe2\x82"))
	f.Add(byte(11), []byte("  \n"))
	a, c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, statusByte byte, text []byte) {
		status := fuzzStatus(statusByte)
		if status < 300 {
			status = http.StatusBadGateway
		}
		a.set(status, text, "", true)
		_, err := c.Poll(context.Background(), "del-1")
		requireClassified(t, status, err)
		require.NotContains(t, err.Error(), "Delegate ey")
	})
}

// FuzzRetryAfter answers 503 and 429 with arbitrary Retry-After values: the wait the caller is
// told is never negative, is exact for a number of seconds, and is absent when there is nothing
// to wait for.
func FuzzRetryAfter(f *testing.F) {
	for _, v := range []string{"120", "0", "-1", " 7 ", "1e3", "Wed, 21 Oct 2015 07:28:00 GMT",
		time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), "9223372036854775807", "99999999999999999999", "soon"} {
		f.Add(true, v)
	}
	a, c := fuzzClient(f)
	f.Fuzz(func(t *testing.T, tooMany bool, value string) {
		status := http.StatusServiceUnavailable
		if tooMany {
			status = http.StatusTooManyRequests
		}
		a.set(status, []byte(`{}`), value, false)
		_, err := c.Poll(context.Background(), "del-1")
		require.Error(t, err)
		require.True(t, errs.Retryable(err), "%v", err)
		wait := errs.RetryAfter(err)
		require.GreaterOrEqual(t, wait, time.Duration(0))
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		if e.Status == 0 {
			// A value net/http will not read (a control character, say) broke the exchange
			// itself: retryable like any broken connection, with no wait to honour.
			require.Zero(t, wait, "%v", err)
			return
		}
		require.Equal(t, status, e.Status)
		sent := strings.TrimSpace(value)
		if secs, perr := strconv.ParseInt(sent, 10, 64); perr == nil && sent == strings.TrimSpace(headerValue(value)) {
			if secs > 0 && secs <= math.MaxInt64/int64(time.Second) {
				require.Equal(t, time.Duration(secs)*time.Second, wait)
			} else {
				require.Zero(t, wait)
			}
		}
		if sent == "" {
			require.Zero(t, wait)
		}
	})
}

// headerValue is value as it reaches the client in a header: net/http writes line breaks as
// spaces.
func headerValue(value string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(value)
}
