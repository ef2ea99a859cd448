package chaos_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
)

func TestOpOf(t *testing.T) {
	t.Parallel()
	for path, op := range map[string]chaos.Op{
		"/api/agent/delegates/register":                       chaos.OpRegister,
		"/gratis/api/agent/delegates/heartbeat-with-polling":  chaos.OpHeartbeat,
		"/api/agent/delegates/register-delegate-capacity/d-1": chaos.OpCapacity,
		"/api/agent/delegates/d-1/task-events":                chaos.OpPoll,
		"/api/agent/v2/delegates/d-1/tasks/t-1/acquire":       chaos.OpAcquire,
		"/api/agent/v2/tasks/t-1/delegates/d-1":               chaos.OpReport,
		"/api/executions/t-1/response":                        chaos.OpReport,
		"/api/executions/t-1/task-response":                   chaos.OpReport,
		"/admin/tasks":                                        chaos.OpOther,
	} {
		require.Equal(t, op, chaos.OpOf(path), path)
	}
}

// upstream counts the calls that reach it and answers {"n":<count>}.
func upstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"n":`+strconv.FormatInt(n.Add(1), 10)+`}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b), nil
}

// The proxy's faults: a lost answer reaches the manager but not the caller, Refuse and Reset
// never reach the manager, Down refuses connections until Up, and every call is counted.
func TestProxyFaults(t *testing.T) {
	t.Parallel()
	up, reached := upstream(t)
	p, err := chaos.NewProxy(up.URL)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	poll := p.URL() + "/api/agent/delegates/d-1/task-events"

	resp, body, err := get(t, c, poll)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `{"n":1}`, body)

	var lost atomic.Int64
	p.SetOnLost(func(op chaos.Op) {
		if op == chaos.OpPoll {
			lost.Add(1)
		}
	})
	p.LoseNext(chaos.OpPoll, 1)
	_, _, err = get(t, c, poll)
	require.Error(t, err, "the answer is lost")
	require.Equal(t, int64(2), reached.Load(), "after the manager got the call")
	// The hook runs after the reset the caller saw.
	require.Eventually(t, func() bool { return lost.Load() == 1 }, 10*time.Second, time.Millisecond)

	p.SetRefusal(http.StatusTooManyRequests, "7")
	p.SetMode(chaos.Refuse, chaos.OpPoll)
	resp, _, err = get(t, c, poll)
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))
	resp, _, err = get(t, c, p.URL()+"/api/agent/delegates/register")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "other calls pass")

	p.SetMode(chaos.Reset)
	_, _, err = get(t, c, poll)
	require.Error(t, err)
	require.Equal(t, int64(3), reached.Load(), "refused and reset calls never reach the manager")

	p.SetMode(chaos.Pass)
	p.Down()
	_, _, err = get(t, c, poll)
	require.ErrorContains(t, err, "refused")
	require.NoError(t, p.Up())
	resp, _, err = get(t, c, poll)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	counts := p.Counts()
	require.Equal(t, 5, counts.Seen[chaos.OpPoll], "every poll that reached the proxy")
	require.Equal(t, 3, counts.Forwarded[chaos.OpPoll])
	require.Equal(t, 1, counts.Lost[chaos.OpPoll])
	require.Len(t, p.Calls(chaos.OpPoll), 5)
}

// In Lose mode every call reaches the manager and no answer reaches the caller, until Pass.
func TestLoseModeDropsEveryAnswer(t *testing.T) {
	t.Parallel()
	up, reached := upstream(t)
	p, err := chaos.NewProxy(up.URL)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	acquire := p.URL() + "/api/agent/v2/delegates/d-1/tasks/t-1/acquire"

	p.SetMode(chaos.Lose, chaos.OpAcquire)
	for range 3 {
		_, _, err = get(t, c, acquire)
		require.Error(t, err, "the answer is lost")
	}
	resp, _, err := get(t, c, p.URL()+"/api/agent/delegates/d-1/task-events")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "other calls pass")
	require.Equal(t, int64(4), reached.Load(), "every call reached the manager")

	p.SetMode(chaos.Pass, chaos.OpAcquire)
	resp, _, err = get(t, c, acquire)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 3, p.Counts().Lost[chaos.OpAcquire])
}

func TestInjectEvents(t *testing.T) {
	t.Parallel()
	out := chaos.InjectEvents([]byte(`{"delegateTaskEvents":[]}`), `{"delegateTaskId":"a"}`, `"junk"`)
	var got struct{ DelegateTaskEvents []json.RawMessage }
	require.NoError(t, json.Unmarshal(out, &got))
	require.Len(t, got.DelegateTaskEvents, 2)

	out = chaos.InjectEvents([]byte(`{"delegateTaskEvents":[{"delegateTaskId":"b"}]}`), `{"delegateTaskId":"a"}`)
	require.JSONEq(t, `{"delegateTaskEvents":[{"delegateTaskId":"a"},{"delegateTaskId":"b"}]}`, string(out))

	require.Equal(t, "not json", string(chaos.InjectEvents([]byte("not json"), `{}`)))
}
