package harness_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/harness"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/tasks"
)

// wireRecord is one request of testdata/harness-delegate-wire.json: what the reference client
// sent, and what the scripted manager answered.
type wireRecord struct {
	Op             string            `json:"op"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Query          map[string]string `json:"query"`
	AuthScheme     string            `json:"auth_scheme"`
	AuthHeader     json.RawMessage   `json:"auth_jwe_protected_header"`
	AuthParts      int               `json:"auth_jwe_parts"`
	ContentType    string            `json:"content_type"`
	Body           json.RawMessage   `json:"body"`
	ResponseStatus int               `json:"response_status"`
	ResponseBody   json.RawMessage   `json:"response_body"`
}

func loadWire(t *testing.T) []wireRecord {
	t.Helper()
	raw, err := os.ReadFile("testdata/harness-delegate-wire.json")
	require.NoError(t, err)
	var doc struct {
		Requests []wireRecord `json:"requests"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Requests)
	return doc.Requests
}

// TestConformance drives the client with the recording's inputs, answers every call with the
// recorded answer, and checks that each request is the one the reference client sent.
func TestConformance(t *testing.T) {
	t.Parallel()
	for i, rec := range loadWire(t) {
		t.Run(fmt.Sprintf("%02d %s %s %s", i, rec.Op, rec.Method, rec.Path), func(t *testing.T) {
			t.Parallel()
			endpoint, reqs := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method == rec.Method && r.URL.Path == prefix+rec.Path:
					body := ""
					if len(rec.ResponseBody) > 0 {
						body = string(rec.ResponseBody)
					}
					reply(rec.ResponseStatus, body)(w, r)
				case strings.HasSuffix(r.URL.Path, "/api/agent/delegates/register"):
					// Recording the capacity registers first.
					reply(http.StatusOK, `{"resource":{"delegateId":"del-123"}}`)(w, r)
				default:
					w.WriteHeader(http.StatusOK)
				}
			})

			var sent map[string]any
			if !isNull(rec.Body) {
				require.NoError(t, json.Unmarshal(rec.Body, &sent))
			}
			clock := newClock(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
			if ms, ok := sent["lastHeartBeat"].(float64); ok {
				clock = newClock(time.UnixMilli(int64(ms)))
			}
			c := newClient(t, endpoint, func(o *harness.Options) { o.Now = clock.Now })

			driveRecorded(t, c, rec, sent, clock.Now())

			var matching []captured
			for _, req := range reqs.all() {
				if req.Method == rec.Method && req.Path == prefix+rec.Path {
					matching = append(matching, req)
				}
			}
			require.Len(t, matching, 1, "requests for %s %s", rec.Method, rec.Path)
			requireRecorded(t, rec, matching[0])
		})
	}
}

// driveRecorded makes the call that produces rec and checks what the client made of the
// recorded answer.
func driveRecorded(t *testing.T, c *harness.Client, rec wireRecord, sent map[string]any, now time.Time) {
	t.Helper()
	ctx := t.Context()
	switch {
	case rec.Path == "/api/agent/delegates/register":
		reg, err := c.Register(ctx, recordedDelegate(sent, 4))
		require.NoError(t, err)
		require.Equal(t, manager.Registration{DelegateID: "del-123"}, reg)

	case rec.Path == "/api/agent/delegates/heartbeat-with-polling":
		hb, err := c.Heartbeat(ctx, "del-123", recordedDelegate(sent, 4))
		require.NoError(t, err)
		require.Equal(t, manager.Heartbeat{Status: manager.StatusEnabled, DelegateID: "del-123"}, hb)

	case strings.HasPrefix(rec.Path, "/api/agent/delegates/register-delegate-capacity/"):
		reg, err := c.Register(ctx, manager.Delegate{
			Name: "runner-a", HostName: "dlite-host", IP: "10.0.0.5", Token: "per-process-token",
			Tags: []string{"linux"}, TaskTypes: []string{"CI_DOCKER_EXECUTE_TASK"}, Capacity: 4,
		})
		require.NoError(t, err)
		require.Equal(t, "del-123", reg.DelegateID)

	case strings.HasSuffix(rec.Path, "/task-events"):
		events, err := c.Poll(ctx, "del-123")
		require.NoError(t, err)
		require.Equal(t, []manager.Event{{TaskID: "task-9", TaskType: "CI_DOCKER_EXECUTE_TASK"}}, events)

	case strings.HasSuffix(rec.Path, "/acquire"):
		task, err := c.Acquire(ctx, "del-123", "task-9")
		require.NoError(t, err)
		var answer struct {
			RunnerResponse bool `json:"runnerResponse"`
		}
		require.NoError(t, json.Unmarshal(rec.ResponseBody, &answer))
		require.Equal(t, tasks.Envelope{
			ID:             "task-9",
			Type:           "CI_DOCKER_EXECUTE_TASK",
			Timeout:        600 * time.Second,
			Async:          true,
			RunnerResponse: answer.RunnerResponse,
			Logging:        tasks.Logging{Token: "log-tok", Abstractions: map[string]string{"pipeline": "p1"}},
			Delegate:       tasks.Delegate{ID: "del-123", InstanceID: "inst-1", Token: "dtok"},
			Capabilities:   json.RawMessage(`[]`),
			AcquiredAt:     now,
		}, task.Envelope)
		require.JSONEq(t, `{"command":"echo hi"}`, string(task.Data))
		require.JSONEq(t, string(rec.ResponseBody), string(task.Raw))

	case strings.HasPrefix(rec.Path, "/api/agent/v2/tasks/"):
		// The legacy endpoint: an OK result whose output is the recorded data object.
		data, err := json.Marshal(sent["data"])
		require.NoError(t, err)
		require.Equal(t, "OK", sent["code"])
		require.NoError(t, c.Report(ctx, manager.Result{
			TaskID: "task-9", TaskType: "CI_DOCKER_EXECUTE_TASK", DelegateID: "del-123",
			Endpoint: manager.EndpointLegacy, Code: manager.CodeOK, Data: data,
		}))

	case strings.HasSuffix(rec.Path, "/response"), strings.HasSuffix(rec.Path, "/task-response"):
		// The runner and v2 endpoints carry the handler's output bytes as they were written.
		out, err := base64.StdEncoding.DecodeString(sent["data"].(string))
		require.NoError(t, err)
		r := manager.Result{
			TaskID: "task-9", TaskType: "CI_DOCKER_EXECUTE_TASK", DelegateID: "del-123",
			Endpoint: manager.EndpointRunner, Code: manager.Code(sent["code"].(string)),
			Error: sent["error"].(string), Data: out,
		}
		if strings.HasSuffix(rec.Path, "/task-response") {
			require.NoError(t, c.ReportV2(ctx, "runner-7", r))
		} else {
			require.NoError(t, c.Report(ctx, r))
		}

	default:
		t.Fatalf("no driver for %s %s", rec.Method, rec.Path)
	}
}

// recordedDelegate is the Delegate that reproduces a recorded DelegateParams body.
func recordedDelegate(sent map[string]any, capacity int) manager.Delegate {
	strs := func(key string) []string {
		var out []string
		for _, v := range sent[key].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	return manager.Delegate{
		Name:     sent["delegateName"].(string),
		HostName: sent["hostName"].(string),
		IP:       sent["ip"].(string),
		// The reference client put the account secret in delegateRandomToken; dlite sends a
		// random token of its own process there instead. To reproduce the recorded bytes, the
		// test feeds the recorded value as that per-process token.
		Token:     sent["delegateRandomToken"].(string),
		Tags:      strs("tags"),
		TaskTypes: strs("supportedTaskTypes"),
		Capacity:  capacity,
		// At is left zero: lastHeartBeat then comes from Options.Now, fixed to the recorded ms.
	}
}

// requireRecorded checks a request against its recording.
func requireRecorded(t *testing.T, rec wireRecord, got captured) {
	t.Helper()
	require.Equal(t, rec.Method, got.Method)
	require.Equal(t, prefix+rec.Path, got.Path)
	wantQuery := url.Values{}
	for k, v := range rec.Query {
		wantQuery.Set(k, v)
	}
	require.Equal(t, wantQuery, got.Query)
	require.Equal(t, []string{rec.ContentType}, got.Header.Values("Content-Type"))

	auth := got.Header.Values("Authorization")
	require.Len(t, auth, 1)
	scheme, token, ok := strings.Cut(auth[0], " ")
	require.True(t, ok)
	require.Equal(t, rec.AuthScheme, scheme)
	parts := strings.Split(token, ".")
	require.Len(t, parts, rec.AuthParts)
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.JSONEq(t, string(rec.AuthHeader), string(header))

	var want []byte
	if !isNull(rec.Body) {
		want = rec.Body
	}
	require.Equal(t, jsonValue(t, want), jsonValue(t, got.Body))
}

func isNull(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null"
}
