package bench

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/dlite-dev/dlite/internal/httprec"
	"github.com/dlite-dev/dlite/mockmanager"
)

// prefilledPath lists the ids of the tasks a bench mock queued at its start, oldest first.
const prefilledPath = "/bench/prefilled"

// backlog is the queue a bench mock answers task-events calls from when its answers are not
// capped: every task it queued at start that no delegate has acquired yet, oldest first, as the
// real manager answers a delegate. The mock manager still takes each call (authentication,
// the delegate's state, request validation) and answers it with at most one event; that answer
// is replaced by the whole queue, written here without the mock's response validation, which
// costs about 20 ms of CPU per thousand events and would make a 20,000-event answer measure the
// mock instead of the client.
type backlog struct {
	account string

	mu     sync.Mutex
	ids    []string
	taken  map[string]bool
	head   int // ids before head are all taken
	prefix []byte
}

func newBacklog(account string, ids []string) *backlog {
	return &backlog{account: account, ids: ids, taken: make(map[string]bool, len(ids))}
}

// take records that a task was acquired: it leaves the queue.
func (b *backlog) take(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.taken[id] = true
	for b.head < len(b.ids) && b.taken[b.ids[b.head]] {
		b.head++
	}
}

// answer is the task-events answer with every task still queued.
func (b *backlog) answer() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.prefix == nil {
		account, _ := json.Marshal(b.account)
		b.prefix = append(append([]byte(`{"accountId":`), account...), `,"delegateTaskId":"`...)
	}
	const suffix = `","eventType":"DelegateTaskEvent","sync":false,"taskType":"SLEEP_TASK"}`
	out := make([]byte, 0, 32+(len(b.ids)-b.head)*(len(b.prefix)+len(suffix)+40))
	out = append(out, `{"delegateTaskEvents":[`...)
	first := true
	for _, id := range b.ids[b.head:] {
		if b.taken[id] {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(append(append(out, b.prefix...), id...), suffix...)
	}
	return append(out, "]}"...)
}

// serveBacklogPoll passes a task-events call to the mock manager and, when it answers 200,
// answers with the whole queue instead.
func (c *counting) serveBacklogPoll(w http.ResponseWriter, r *http.Request) int {
	rec := httprec.New()
	c.next.ServeHTTP(rec, r)
	status, body := rec.Status(), rec.Body()
	if status == http.StatusOK {
		body = c.backlog.answer()
		rec.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return status
}

// prefill queues n SLEEP_TASKs of the given length in the mock manager and returns their ids.
func prefill(mm *mockmanager.Server, n int, millis int64) ([]string, error) {
	data := json.RawMessage(`{"milliseconds":` + strconv.FormatInt(millis, 10) + `}`)
	ids := make([]string, 0, n)
	for range n {
		id, err := mm.Enqueue(mockmanager.NewTask{Type: "SLEEP_TASK", Data: &data})
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}
