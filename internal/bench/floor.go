package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/dlite-dev/dlite/internal/retry"
)

// FloorOptions configure the floor: the least a client can do to run tasks with the manager's
// protocol.
type FloorOptions struct {
	// Endpoint is the manager's base URL.
	Endpoint string
	// AccountID and Secret (32 hex characters) are the account the floor mints its token for.
	AccountID string
	Secret    string
	// Workers is how many tasks run at once.
	Workers int
	// Interval is the wait between polls that start nothing.
	Interval time.Duration
	// StartsFile, when set, receives one "taskID unixNano" line per started task when the floor
	// stops.
	StartsFile string
}

// floor makes the calls a runner must make per task, and nothing else: it polls only when a
// worker is free, reads the answer once and keeps the task events it could not take yet as
// candidates, acquires at most as many of them as it has free workers (concurrently, one goroutine
// per free worker walking the candidates), runs the task (a SLEEP_TASK wait), posts the result in
// the background and frees the worker. A freed worker takes the next kept candidate without
// polling; the floor polls again when the interval since its last poll has passed (for new events)
// or, at once, when a poll kept starting tasks and left none. Whatever the manager's queue holds,
// a task costs it one acquire, one result and its share of the polls. It validates nothing, keeps
// no spool and logs nothing.
type floor struct {
	opts     FloorOptions
	base     string
	query    string
	client   *http.Client
	auth     string
	delegate string
	free     atomic.Int64
	freed    chan struct{}
	claimed  sync.Map
	mu       sync.Mutex
	starts   []start
	results  sync.WaitGroup
}

type start struct {
	id string
	at int64
}

// newFloorClient is a plain HTTP client tuned for many small calls to one host: every worker
// keeps its connection alive between calls.
func newFloorClient(workers int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: max(workers, 64) + 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// RunFloor registers a delegate that runs SLEEP_TASK and runs tasks until ctx ends.
func RunFloor(ctx context.Context, opts FloorOptions) error {
	key, err := hex.DecodeString(opts.Secret)
	if err != nil || len(key) != 16 {
		return errors.New("floor: the account secret must be 32 hex characters")
	}
	tok, err := mintToken(opts.AccountID, key)
	if err != nil {
		return err
	}
	f := &floor{
		opts:   opts,
		base:   opts.Endpoint,
		query:  "accountId=" + url.QueryEscape(opts.AccountID),
		client: newFloorClient(opts.Workers),
		auth:   "Delegate " + tok,
		freed:  make(chan struct{}, 1),
	}
	f.free.Store(int64(opts.Workers))
	if err := f.register(ctx); err != nil {
		return err
	}
	err = f.loop(ctx)
	f.results.Wait()
	if werr := f.writeStarts(); werr != nil {
		return werr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// mintToken makes the Delegate JWE once: the floor runs for minutes, well within its lifetime.
func mintToken(account string, key []byte) (string, error) {
	enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.DIRECT, Key: key},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Encrypted(enc).Claims(jwt.Claims{
		Subject: account, Issuer: "issuer", Audience: jwt.Audience{"audience"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(20 * time.Minute)),
		ID: uuid.NewString(),
	}).Serialize()
}

func (f *floor) call(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", f.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // drain, so the connection is reused
	return resp.StatusCode, err
}

func (f *floor) register(ctx context.Context) error {
	body, _ := json.Marshal(map[string]any{
		"accountId": f.opts.AccountID, "delegateName": "bench-floor", "delegateType": "DOCKER",
		"ng": true, "pollingModeEnabled": true, "supportedTaskTypes": []string{"SLEEP_TASK"},
	})
	var out struct {
		Resource struct {
			DelegateID string `json:"delegateId"`
		} `json:"resource"`
	}
	status, err := f.call(ctx, http.MethodPost, "/api/agent/delegates/register?"+f.query, body, &out)
	if err != nil || status != http.StatusOK || out.Resource.DelegateID == "" {
		return fmt.Errorf("floor: register: status %d: %v", status, err)
	}
	f.delegate = out.Resource.DelegateID
	return nil
}

// taskIDKey starts the task id of an event in a task-events answer.
var taskIDKey = []byte(`"delegateTaskId":"`)

// taskIDs appends to ids the task ids of an answer's events, found where they lie without
// decoding the answer: the floor trusts the bench mock, whose events all offer a SLEEP_TASK and
// whose task ids need no escapes. A runner cannot take that shortcut; the floor is the least a
// client could do.
func taskIDs(ids []string, answer []byte) []string {
	for {
		i := bytes.Index(answer, taskIDKey)
		if i < 0 {
			return ids
		}
		answer = answer[i+len(taskIDKey):]
		end := bytes.IndexByte(answer, '"')
		if end < 0 {
			return ids
		}
		ids = append(ids, string(answer[:end]))
		answer = answer[end+1:]
	}
}

// poll reads the task-events answer into buf and returns it.
func (f *floor) poll(ctx context.Context, path string, buf *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", f.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("poll: %s", resp.Status)
	}
	return nil
}

func (f *floor) loop(ctx context.Context) error {
	pollPath := "/api/agent/delegates/" + f.delegate + "/task-events?" + f.query
	// cands are the kept task events not tried yet, oldest first.
	var cands []string
	var polled time.Time
	var answer bytes.Buffer // kept between polls
	for {
		if f.free.Load() == 0 {
			select {
			case <-f.freed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(cands) == 0 || time.Since(polled) >= f.opts.Interval {
			err := f.poll(ctx, pollPath, &answer)
			polled = time.Now()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := retry.Sleep(ctx, f.opts.Interval); err != nil {
					return err
				}
				continue
			}
			// The latest answer is the manager's queue: what it no longer lists went elsewhere.
			all := taskIDs(cands[:0], answer.Bytes())
			cands = all[:0]
			for _, id := range all {
				if _, busy := f.claimed.Load(id); !busy {
					cands = append(cands, id)
				}
			}
		}
		var started int
		started, cands = f.take(ctx, cands)
		if started > 0 && f.free.Load() > 0 && len(cands) == 0 {
			continue
		}
		t := time.NewTimer(time.Until(polled.Add(f.opts.Interval)))
		var freed <-chan struct{}
		if len(cands) > 0 {
			freed = f.freed
		}
		select {
		case <-t.C:
		case <-freed:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// take reserves free workers for the candidates and acquires into them, walking the candidates
// from the oldest; it returns how many tasks started and the candidates not tried.
func (f *floor) take(ctx context.Context, cands []string) (int, []string) {
	if len(cands) == 0 {
		return 0, cands
	}
	n := int64(len(cands))
	for {
		free := f.free.Load()
		n = min(n, free)
		if n == 0 || f.free.CompareAndSwap(free, free-n) {
			break
		}
	}
	var next, started atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cands) {
					f.release()
					return
				}
				if f.acquire(ctx, cands[i]) {
					started.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	return int(started.Load()), cands[min(int(next.Load()), len(cands)):]
}

func (f *floor) release() {
	f.free.Add(1)
	select {
	case f.freed <- struct{}{}:
	default:
	}
}

type floorTask struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Milliseconds int64 `json:"milliseconds"`
	} `json:"data"`
}

// acquire claims, acquires and starts one task; true means it runs in the caller's worker.
func (f *floor) acquire(ctx context.Context, id string) bool {
	if _, busy := f.claimed.LoadOrStore(id, struct{}{}); busy {
		return false
	}
	var t floorTask
	status, err := f.call(context.WithoutCancel(ctx), http.MethodPut,
		"/api/agent/v2/delegates/"+f.delegate+"/tasks/"+id+"/acquire?"+f.query+"&delegateInstanceId="+f.delegate, nil, &t)
	if err != nil || status != http.StatusOK || t.ID == "" {
		f.claimed.Delete(id)
		return false
	}
	f.mu.Lock()
	f.starts = append(f.starts, start{id: t.ID, at: time.Now().UnixNano()})
	f.mu.Unlock()
	f.results.Add(1)
	go f.run(t)
	return true
}

func (f *floor) run(t floorTask) {
	defer f.results.Done()
	if t.Data.Milliseconds > 0 {
		time.Sleep(time.Duration(t.Data.Milliseconds) * time.Millisecond)
	}
	body := []byte(`{"id":"` + t.ID + `","type":"` + t.Type + `","code":"OK","data":{"sleptMilliseconds":` +
		strconv.FormatInt(t.Data.Milliseconds, 10) + `}}`)
	f.release()
	_, _ = f.call(context.Background(), http.MethodPost, "/api/agent/v2/tasks/"+t.ID+"/delegates/"+f.delegate+"?"+f.query, body, nil)
	f.claimed.Delete(t.ID)
}

func (f *floor) writeStarts() error {
	if f.opts.StartsFile == "" {
		return nil
	}
	file, err := os.Create(f.opts.StartsFile)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(file)
	f.mu.Lock()
	for _, s := range f.starts {
		fmt.Fprintf(w, "%s %d\n", s.id, s.at)
	}
	f.mu.Unlock()
	if err := w.Flush(); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
