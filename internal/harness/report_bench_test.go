package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dlite-dev/dlite/internal/manager"
)

func benchResult(code manager.Code, data string) manager.Result {
	return manager.Result{TaskID: "task-0123456789abcdef", TaskType: "SLEEP_TASK", DelegateID: "delegate-0123456789abcdef",
		Code: code, Data: json.RawMessage(data), FinishedAt: time.Now()}
}

// BenchmarkLegacyResponseBody builds and encodes the legacy endpoint's body of a successful task.
func BenchmarkLegacyResponseBody(b *testing.B) {
	r := benchResult(manager.CodeOK, `{"sleptMilliseconds":0}`)
	b.ReportAllocs()
	for b.Loop() {
		body, err := legacyResponse(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLegacyResponseBodyFailed builds and encodes the legacy body of a failed task, whose
// output object gains an errorMessage.
func BenchmarkLegacyResponseBodyFailed(b *testing.B) {
	r := benchResult(manager.CodeFailed, `{"exitCode":1,"output":"make: *** [all] Error 1\n","outputVars":{}}`)
	r.Error = "exit status 1"
	b.ReportAllocs()
	for b.Loop() {
		body, err := legacyResponse(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunnerResponseBody builds and encodes the runner endpoint's body (output as base64).
func BenchmarkRunnerResponseBody(b *testing.B) {
	r := benchResult(manager.CodeOK, `{"exitCode":0,"output":"building\ndone\n","outputVars":{"VERSION":"1.2.3"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(runnerResponse(r)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoll1000Events polls an answer of a thousand task events, a full page of the mock
// manager, over loopback: the per-poll cost of a runner with many queued tasks.
func BenchmarkPoll1000Events(b *testing.B) { benchmarkPoll(b, 1000) }

// BenchmarkPoll10000Events polls the uncapped answer of a manager with 10,000 queued tasks.
func BenchmarkPoll10000Events(b *testing.B) { benchmarkPoll(b, 10000) }

// BenchmarkPoll20000Events polls the uncapped answer of a manager with 20,000 queued tasks.
func BenchmarkPoll20000Events(b *testing.B) { benchmarkPoll(b, 20000) }

func benchmarkPoll(b *testing.B, n int) {
	var page strings.Builder
	page.WriteString(`{"delegateTaskEvents":[`)
	for i := range n {
		if i > 0 {
			page.WriteByte(',')
		}
		fmt.Fprintf(&page, `{"accountId":"acct","delegateTaskId":"task-%016x","sync":false,"taskType":"SLEEP_TASK","eventType":"DelegateTaskEvent"}`, i)
	}
	page.WriteString(`]}`)
	body := page.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	c, err := New(Options{Endpoint: srv.URL, AccountID: "acct", Token: "fixed-token"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		events, err := c.Poll(ctx, "d-1")
		if err != nil || len(events) != n {
			b.Fatalf("poll: %d events, %v", len(events), err)
		}
	}
}
