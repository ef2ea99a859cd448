package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	gen "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/internal/manager"
)

// generatedDecode is the task-events answer decoded through the generated types, as the client
// did before it decoded answers in one pass: the whole answer into gen.TaskEventsResponse, then
// each event through its union. It is the model decodeEvents must agree with.
func generatedDecode(body []byte) ([]manager.Event, []int, error) {
	var out gen.TaskEventsResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, nil, err
	}
	if out.DelegateTaskEvents == nil {
		return nil, nil, nil
	}
	var events []manager.Event
	var skipped []int
	for i, raw := range *out.DelegateTaskEvents {
		ev, err := generatedEvent(raw)
		if err != nil {
			skipped = append(skipped, i)
			continue
		}
		events = append(events, ev)
	}
	return events, skipped, nil
}

func generatedEvent(raw gen.TaskEvent) (manager.Event, error) {
	kind, err := raw.Discriminator()
	if err != nil {
		return manager.Event{}, err
	}
	var fields gen.TaskEventFields
	var abort bool
	switch kind {
	case "", eventWork:
		fields, err = raw.AsDelegateTaskEvent()
	case eventAbort:
		fields, err = raw.AsDelegateTaskAbortEvent()
		abort = true
	default:
		return manager.Event{}, fmt.Errorf("unknown eventType %q", kind)
	}
	if err != nil {
		return manager.Event{}, err
	}
	if fields.DelegateTaskId == "" {
		return manager.Event{}, errors.New("event without delegateTaskId")
	}
	return manager.Event{TaskID: fields.DelegateTaskId, TaskType: deref(fields.TaskType), Sync: deref(fields.Sync), Abort: abort}, nil
}

// requireSameAsGenerated decodes body both ways and requires the same events, the same skipped
// indices, and an error from both or from neither.
func requireSameAsGenerated(t *testing.T, body []byte) {
	t.Helper()
	if isEmpty(body) {
		// Poll answers these with no events before decoding.
		return
	}
	want, wantSkipped, wantErr := generatedDecode(body)
	got, gotSkipped, err := decodeEvents(body)
	if wantErr != nil {
		require.Error(t, err, "the generated types reject %q: %v", body, wantErr)
		return
	}
	require.NoError(t, err, "%q", body)
	require.Equal(t, want, got, "%q", body)
	indices := make([]int, 0, len(gotSkipped))
	for _, s := range gotSkipped {
		require.Error(t, s.err)
		indices = append(indices, s.index)
	}
	require.Equal(t, len(wantSkipped), len(indices), "skipped events of %q", body)
	if len(wantSkipped) > 0 {
		require.Equal(t, wantSkipped, indices, "%q", body)
	}
}

// decodeCases are answers where a one-pass decoder could part from encoding/json: repeated keys,
// nulls, keys in other cases or escaped, invalid UTF-8, odd numbers, nesting at the limit, and
// answers that are not JSON or not an answer.
var decodeCases = []string{
	`{"delegateTaskEvents":[{"accountId":"a","delegateTaskId":"t-1","sync":true,"taskType":"SHELL_SCRIPT_TASK"}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"t-1","eventType":"DelegateTaskAbortEvent"},{"delegateTaskId":"t-2","eventType":"Other"}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":""},{"delegateTaskId":7},"text",null,[],{},true,-0.5e+3]}`,
	`{"delegateTaskEvents":null}`, `{"delegateTaskEvents":{}}`, `{"delegateTaskEvents":"x"}`, `{"delegateTaskEvents":1}`,
	`{"delegateTaskEvents":[]}`, `{}`, `[]`, `"text"`, `12`, `true`, `{"delegateTaskEvents":[`, `{"a":1}x`, `{"a":1} `,
	`{"delegateTaskEvents":[{"delegateTaskId":"a"}],"delegateTaskEvents":null}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a"}],"delegateTaskEvents":[{"delegateTaskId":"b"},7]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a"}],"delegateTaskEvents":{}}`,
	`{"DELEGATETASKEVENTS":[{"DelegateTaskID":"a","TASKTYPE":"X","SYNC":true,"EVENTTYPE":"DelegateTaskAbortEvent"}]}`,
	`{"delegate\u0054askEvents":[{"delegate\u0054askId":"\u0061\n\ud83d\ude00","taskType":"\"q\""}]}`,
	"{\"delegateTaskEvents\":[{\"delegateTa\u017fkId\":\"kelvin-\u212a\",\"taskType\":\"X\"}]}",
	"{\"delegateTaskEvents\":[{\"delegateTaskId\":\"bad-\xff-utf8\",\"taskType\":\"\xc3\"}]}",
	"{\"delegateTaskEvents\":[{\"delegateTaskId\xff\":\"x\"}]}",
	`{"delegateTaskEvents":[{"delegateTaskId":"a","delegateTaskId":null,"taskType":"X","taskType":null,"sync":true,"sync":null}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","eventType":"DelegateTaskAbortEvent","eventType":null}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","eventType":5},{"delegateTaskId":"b","accountId":5},{"delegateTaskId":"c","sync":"true"},{"delegateTaskId":"d","taskType":[]}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","eventType":"Other","sync":"x"},{"delegateTaskId":"b","eventType":5,"sync":"x"}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","eventType":"DelegateTask\u0041bortEvent"},{"delegateTaskId":"b","eventType":""}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","x":{"y":[1,2,{"z":null}],"w":"\\"}}],"future":{"n":-0,"m":1.5E-7}}`,
	`{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"n":1e}`, `{"n":.5}`, `{"s":"\x"}`, `{"s":"\u12"}`, "{\"s\":\"a\tb\"}",
	`{"n":tru}`, `{"n":nul}`, `{,}`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{"a":[}`, `{"a":{]}`,
	" \t\r\n{\"delegateTaskEvents\" : [ { \"delegateTaskId\" : \"a\" } ] } \n",
	`{"delegateTaskEvents":[{"delegateTaskId":"a","taskType":"X"},{"delegateTaskId":"b","taskType":"X"},{"delegateTaskId":"c","taskType":"Y"},{"delegateTaskId":"d","taskType":"X"}]}`,
	`{"delegateTaskEvents":[{"delegateTaskId":"a","taskType":"X"},{"delegateTaskId":"b","taskType":"\u0058"}]}`,
	nested(maxDepth - 1), nested(maxDepth),
}

// nested is an answer whose first event holds lists nested until the answer is depth levels deep.
func nested(depth int) string {
	n := depth - 2 // the answer and the list of events
	return `{"delegateTaskEvents":[` + strings.Repeat("[", n) + strings.Repeat("]", n) + `]}`
}

func TestDecodeEventsMatchesTheGeneratedTypes(t *testing.T) {
	t.Parallel()
	for _, body := range decodeCases {
		requireSameAsGenerated(t, []byte(body))
	}
}

func TestDecodeEventsFailsAsAnswerNotAsJSON(t *testing.T) {
	t.Parallel()
	for _, body := range decodeCases {
		_, _, err := decodeEvents([]byte(body))
		if !json.Valid([]byte(body)) {
			require.Error(t, err, "%q is not JSON", body)
			var syntax *syntaxError
			require.ErrorAs(t, err, &syntax, "%q", body)
		} else if err != nil {
			require.NotErrorAs(t, err, new(*syntaxError), "%q is JSON", body)
		}
	}
}

// TestDecodeEventsAllocatesOnlyWhatItKeeps decodes an answer of events padded with fields the
// runner does not read: it allocates the list, each task id and the one task type, nothing for
// what it steps over.
func TestDecodeEventsAllocatesOnlyWhatItKeeps(t *testing.T) {
	const n = 500
	var b strings.Builder
	b.WriteString(`{"delegateTaskEvents":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"accountId":"acct","delegateTaskId":"task-%d","sync":false,"taskType":"SLEEP_TASK",`+
			`"eventType":"DelegateTaskEvent","extra":{"list":[1,"two",null,{"three":3.5e1}],"text":"a\"b"}}`, i)
	}
	b.WriteString(`],"future":[{"x":"y"}]}`)
	body := []byte(b.String())
	allocs := testing.AllocsPerRun(20, func() {
		events, skipped, err := decodeEvents(body)
		if err != nil || len(events) != n || len(skipped) != 0 {
			panic(fmt.Sprintf("%d events, %d skipped, %v", len(events), len(skipped), err))
		}
	})
	require.Equal(t, float64(1+n+1), allocs)
}

// FuzzDecodeEvents requires the one-pass decoder to agree with the generated types on every
// answer: the same events, the same skipped ones, and an error for the same answers.
func FuzzDecodeEvents(f *testing.F) {
	for _, body := range decodeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		requireSameAsGenerated(t, body)
	})
}

// BenchmarkDecode20000Events decodes the uncapped answer of a manager with 20,000 queued tasks in
// memory, in one pass and, for comparison, with encoding/json into the fields an event needs.
func BenchmarkDecode20000Events(b *testing.B) {
	var page strings.Builder
	page.WriteString(`{"delegateTaskEvents":[`)
	for i := range 20000 {
		if i > 0 {
			page.WriteByte(',')
		}
		fmt.Fprintf(&page, `{"accountId":"acct","delegateTaskId":"task-%016x","sync":false,"taskType":"SLEEP_TASK","eventType":"DelegateTaskEvent"}`, i)
	}
	page.WriteString(`]}`)
	body := []byte(page.String())
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if events, _, err := decodeEvents(body); err != nil || len(events) != 20000 {
				b.Fatal(len(events), err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var answer struct {
				DelegateTaskEvents []struct {
					DelegateTaskID string `json:"delegateTaskId"`
					TaskType       string `json:"taskType"`
					Sync           bool   `json:"sync"`
					EventType      string `json:"eventType"`
				} `json:"delegateTaskEvents"`
			}
			if err := json.Unmarshal(body, &answer); err != nil || len(answer.DelegateTaskEvents) != 20000 {
				b.Fatal(err)
			}
		}
	})
}

// The acquire URL built by hand is the one the generated client builds, whatever the ids hold.
func TestAcquireURLIsTheGeneratedClients(t *testing.T) {
	t.Parallel()
	for _, server := range []string{"https://manager.example/", "http://127.0.0.1:8080/gratis/"} {
		for _, ids := range [][3]string{
			{"acct-1", "del-1", "task-1"},
			{"a b&c=d", "d/e?f#g", "t%20h+i"},
			{"ünï", "日本", "semi;colon,comma"},
		} {
			want, err := gen.NewAcquireTaskRequest(server, ids[1], ids[2], &gen.AcquireTaskParams{AccountId: ids[0], DelegateInstanceId: ids[1]})
			require.NoError(t, err)
			require.Equal(t, want.URL.String(), acquireURL(server, ids[0], ids[1], ids[2]), "%q", ids)
		}
	}
}
