package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlite-dev/dlite/mockmanager"
)

// statsPath is where a bench mock manager answers its counters; acquiresPath lists when each task
// was handed out.
const (
	statsPath    = "/bench/stats"
	acquiresPath = "/bench/acquires"
)

// MockOptions configure the mock manager a bench runs against.
type MockOptions struct {
	// Addr is the listen address; port 0 picks a free one.
	Addr string
	// AccountID and Secret (32 hex characters) are the account the mock serves.
	AccountID string
	Secret    string
	// MaxEventsPerPoll caps the events of one task-events answer (mockmanager.Options).
	MaxEventsPerPoll int
	// Prefill is how many SLEEP_TASKs of PrefillMillis the mock queues before it listens; their
	// ids are served at /bench/prefilled.
	Prefill       int
	PrefillMillis int64
	// Uncapped answers every task-events call with all the prefilled tasks not yet acquired, as
	// the real manager does, instead of at most MaxEventsPerPoll events (see backlog). Tasks
	// enqueued later through the admin API are not offered then.
	Uncapped bool
}

// MockStats are the counters of a bench mock manager. Times are Unix nanoseconds, 0 when the
// thing has not happened yet.
type MockStats struct {
	// Polls counts task-events calls.
	Polls int64 `json:"polls"`
	// Acquires counts the acquires answered with a task; AcquiresRefused the others.
	Acquires        int64 `json:"acquires"`
	AcquiresRefused int64 `json:"acquiresRefused"`
	// Results counts the results accepted; ResultsRefused the others.
	Results        int64 `json:"results"`
	ResultsRefused int64 `json:"resultsRefused"`
	// FirstAcquireNano and LastAcquireNano are when the first and the latest task was handed out;
	// LastResultNano when the latest result was accepted.
	FirstAcquireNano int64 `json:"firstAcquireNano"`
	LastAcquireNano  int64 `json:"lastAcquireNano"`
	LastResultNano   int64 `json:"lastResultNano"`
}

// counting wraps the mock manager's handler and counts the manager calls by kind, so the driver
// can tell when a run is over and how long it took without asking the admin API for every task
// (which would cost the mock more than the run itself).
type counting struct {
	next http.Handler

	polls, acquires, acquiresRefused, results, resultsRefused atomic.Int64
	firstAcquire, lastAcquire, lastResult                     atomic.Int64

	mu       sync.Mutex
	acquired map[string]int64

	// prefilled are the tasks queued at start; backlog, when set, answers the polls.
	prefilled []string
	backlog   *backlog
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (the mock's reset fault hijacks it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func newCounting(next http.Handler) *counting {
	return &counting{next: next, acquired: map[string]int64{}}
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case statsPath:
		writeJSON(w, c.stats())
		return
	case acquiresPath:
		c.mu.Lock()
		out := make(map[string]int64, len(c.acquired))
		for k, v := range c.acquired {
			out[k] = v
		}
		c.mu.Unlock()
		writeJSON(w, out)
		return
	case prefilledPath:
		writeJSON(w, c.prefilled)
		return
	}
	kind := callKind(r)
	if kind == "" {
		c.next.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	if kind == "poll" && c.backlog != nil {
		sw.status = c.serveBacklogPoll(w, r)
	} else {
		c.next.ServeHTTP(sw, r)
	}
	now := time.Now().UnixNano()
	ok := sw.status >= 200 && sw.status < 300
	switch kind {
	case "poll":
		c.polls.Add(1)
	case "acquire":
		if !ok || sw.status == http.StatusNoContent {
			c.acquiresRefused.Add(1)
			return
		}
		c.acquires.Add(1)
		c.firstAcquire.CompareAndSwap(0, now)
		c.lastAcquire.Store(now)
		if id := acquiredTask(r.URL.Path); id != "" {
			c.mu.Lock()
			c.acquired[id] = now
			c.mu.Unlock()
			if c.backlog != nil {
				c.backlog.take(id)
			}
		}
	case "result":
		if !ok {
			c.resultsRefused.Add(1)
			return
		}
		c.results.Add(1)
		c.lastResult.Store(now)
	}
}

func (c *counting) stats() MockStats {
	return MockStats{
		Polls:            c.polls.Load(),
		Acquires:         c.acquires.Load(),
		AcquiresRefused:  c.acquiresRefused.Load(),
		Results:          c.results.Load(),
		ResultsRefused:   c.resultsRefused.Load(),
		FirstAcquireNano: c.firstAcquire.Load(),
		LastAcquireNano:  c.lastAcquire.Load(),
		LastResultNano:   c.lastResult.Load(),
	}
}

// callKind names the manager call a request is: poll, acquire, result, or "" for the rest.
func callKind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/task-events"):
		return "poll"
	case r.Method == http.MethodPut && strings.HasSuffix(p, "/acquire"):
		return "acquire"
	case r.Method == http.MethodPost && (strings.HasPrefix(p, "/api/agent/v2/tasks/") || strings.HasPrefix(p, "/api/executions/")):
		return "result"
	}
	return ""
}

// acquiredTask returns the task id of an acquire path
// (/api/agent/v2/delegates/{delegateId}/tasks/{taskId}/acquire).
func acquiredTask(path string) string {
	rest, ok := strings.CutSuffix(path, "/acquire")
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return ""
	}
	return rest[i+1:]
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ServeMock serves a mock manager with call counters until ctx ends. It writes the base URL as
// the first line of stdout once it listens.
func ServeMock(ctx context.Context, opts MockOptions, stdout io.Writer) error {
	maxEvents := opts.MaxEventsPerPoll
	if opts.Uncapped {
		// The mock manager only vouches for the call; the backlog answers it.
		maxEvents = 1
	}
	mm, err := mockmanager.New(mockmanager.Options{
		AccountID:        opts.AccountID,
		AccountSecret:    opts.Secret,
		MaxEventsPerPoll: maxEvents,
	})
	if err != nil {
		return err
	}
	c := newCounting(mm.Handler())
	if c.prefilled, err = prefill(mm, opts.Prefill, opts.PrefillMillis); err != nil {
		return err
	}
	if opts.Uncapped {
		c.backlog = newBacklog(opts.AccountID, c.prefilled)
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	ln, err := listen(opts.Addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}
