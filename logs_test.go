package dlite

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/syncbuf"
	"github.com/dlite-dev/dlite/mockmanager"
)

// With DLITE_LOG_FORMAT=json every line the runner writes is one JSON object, and each task has a
// start line and a finish line that a log pipeline can select and read without parsing text.
func TestTaskLogLinesInJSON(t *testing.T) {
	t.Parallel()
	mm := mockmanager.NewTest(t, mockmanager.Options{})
	logs := &syncbuf.Buffer{}
	lr := startRunner(t, mm, map[string]string{"DLITE_LOG_FORMAT": "json", "DLITE_LOG_LEVEL": "info"}, logs)
	lr.waitReady(t)

	ok := enqueue(t, mm, sleepTask(20))
	bad := json.RawMessage(`{"milliseconds":-1}`)
	failed := enqueue(t, mm, mockmanager.NewTask{Type: "SLEEP_TASK", Data: &bad})
	require.Equal(t, "OK", waitDone(t, mm, ok).Responses[0].Code)
	require.Equal(t, "FAILED", waitDone(t, mm, failed).Responses[0].Code)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, lr.Shutdown(ctx))
	require.NoError(t, lr.wait())

	type line map[string]any
	started, finished := map[string]line{}, map[string]line{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	n := 0
	for sc.Scan() {
		n++
		var l line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), "line %d is not JSON: %s", n, sc.Text())
		require.NotEmpty(t, l["time"], sc.Text())
		require.NotEmpty(t, l["level"], sc.Text())
		require.NotEmpty(t, l["msg"], sc.Text())
		require.NotContains(t, sc.Text(), mm.AccountSecret(), "the account secret is never logged")
		id, _ := l["task_id"].(string)
		switch l["msg"] {
		case "task started":
			started[id] = l
		case "task finished":
			finished[id] = l
		}
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 4)

	for _, id := range []string{ok, failed} {
		require.Contains(t, started, id)
		require.Equal(t, "SLEEP_TASK", started[id]["task_type"])
		require.Equal(t, "INFO", started[id]["level"])
		require.Contains(t, finished, id)
		require.Equal(t, "SLEEP_TASK", finished[id]["task_type"])
		took, isNumber := finished[id]["duration_ms"].(float64)
		require.True(t, isNumber, "duration_ms is a number: %v", finished[id]["duration_ms"])
		require.GreaterOrEqual(t, took, 0.0)
	}
	require.Equal(t, "OK", finished[ok]["code"])
	require.GreaterOrEqual(t, finished[ok]["duration_ms"].(float64), float64(20))
	require.NotContains(t, finished[ok], "error")
	require.Equal(t, "FAILED", finished[failed]["code"])
	require.NotEmpty(t, finished[failed]["error"])
	require.Equal(t, "invalid_task_data", finished[failed]["reason"])
}
