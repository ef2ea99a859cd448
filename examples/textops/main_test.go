package main

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite"
	"github.com/dlite-dev/dlite/mockmanager"
)

// startRunner runs the textops runner against mm until the test ends.
func startRunner(t *testing.T, mm *mockmanager.TestServer) *dlite.Runner {
	t.Helper()
	env := map[string]string{
		"DLITE_MANAGER_ENDPOINT":        mm.URL,
		"DLITE_ACCOUNT_ID":              mm.AccountID(),
		"DLITE_ACCOUNT_SECRET":          mm.AccountSecret(),
		"DLITE_SPOOL_DIR":               t.TempDir(),
		"DLITE_POLL_INTERVAL_MILLISECS": "50",
		"DLITE_HTTP_ADDR":               "off",
	}
	cfg, err := dlite.LoadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	require.NoError(t, err)
	r, err := newRunner(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		require.NoError(t, r.Shutdown(shutdown))
		cancel()
		require.NoError(t, <-done)
	})
	return r
}

// run enqueues a task and returns its first recorded answer.
func run(t *testing.T, mm *mockmanager.TestServer, typ, data string) mockmanager.RecordedResponse {
	t.Helper()
	raw := json.RawMessage(data)
	id, err := mm.Enqueue(mockmanager.NewTask{Type: typ, Data: &raw})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := mm.WaitDone(ctx, id)
	require.NoError(t, err)
	require.Len(t, st.Responses, 1)
	return st.Responses[0]
}

func TestRunnerAgainstTheMockManager(t *testing.T) {
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	r := startRunner(t, mm)
	require.Subset(t, r.TaskTypes(), []string{"HASH_TASK", "RENDER_TASK"}, "the task types come from the spec")

	res := run(t, mm, "HASH_TASK", `{"text":"hello","algorithm":"sha512"}`)
	require.Equal(t, "OK", res.Code)
	require.Contains(t, string(*res.Data), `"algorithm":"sha512"`)

	res = run(t, mm, "RENDER_TASK", `{"template":"hello {{.name}}","values":{"name":"world"}}`)
	require.Equal(t, "OK", res.Code)
	require.JSONEq(t, `{"text":"hello world"}`, string(*res.Data))

	res = run(t, mm, "RENDER_TASK", `{"template":"hello {{.name}}"}`)
	require.Equal(t, "FAILED", res.Code)
	require.Contains(t, *res.Error, "template cannot be rendered")

	res = run(t, mm, "HASH_TASK", `{"algorithm":"md5"}`)
	require.Equal(t, "FAILED", res.Code, "data that breaks the spec never reaches the handler")
	require.Contains(t, *res.Error, `property "text" is missing`)
}
