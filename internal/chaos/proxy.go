package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Op is a manager call as the proxy tells them apart by path.
type Op string

// The manager calls the proxy counts.
const (
	OpRegister  Op = "register"
	OpHeartbeat Op = "heartbeat"
	OpCapacity  Op = "capacity"
	OpPoll      Op = "poll"
	OpAcquire   Op = "acquire"
	OpReport    Op = "report"
	OpOther     Op = "other"
)

// allOps lists every Op, for modes set on all of them.
var allOps = []Op{OpRegister, OpHeartbeat, OpCapacity, OpPoll, OpAcquire, OpReport, OpOther}

// OpOf classifies a manager API path.
func OpOf(path string) Op {
	switch {
	case strings.HasSuffix(path, "/api/agent/delegates/register"):
		return OpRegister
	case strings.HasSuffix(path, "/heartbeat-with-polling"):
		return OpHeartbeat
	case strings.Contains(path, "/register-delegate-capacity/"):
		return OpCapacity
	case strings.HasSuffix(path, "/task-events"):
		return OpPoll
	case strings.HasSuffix(path, "/acquire"):
		return OpAcquire
	case strings.Contains(path, "/api/agent/v2/tasks/"), strings.HasPrefix(path, "/api/executions/"):
		return OpReport
	default:
		return OpOther
	}
}

// Mode is how the proxy treats a kind of manager call, on top of the random lost answers.
type Mode int

const (
	// Pass forwards calls.
	Pass Mode = iota
	// Reset reads each call and resets its connection without forwarding it: a manager that
	// cannot be reached, whose calls can still be counted.
	Reset
	// Refuse answers each call with the refusal set by SetRefusal (503 by default) without
	// forwarding it.
	Refuse
	// Echo answers each call 500 with a body that repeats the request's headers, as a broken
	// proxy or manager might: what the runner makes of the answer must not repeat its credentials.
	Echo
	// Lose forwards each call and drops its answer: the manager acts on every call, and the
	// runner hears of none.
	Lose
)

// Rewrite may replace the body of a forwarded 2xx answer before the runner sees it.
type Rewrite func(op Op, body []byte) []byte

// InjectEvents returns a task-events answer with the given raw events put before the ones body
// holds. A body that is not a task-events answer comes back unchanged.
func InjectEvents(body []byte, events ...string) []byte {
	var answer map[string]json.RawMessage
	if json.Unmarshal(body, &answer) != nil {
		return body
	}
	var list []json.RawMessage
	if raw, ok := answer["delegateTaskEvents"]; ok && json.Unmarshal(raw, &list) != nil {
		return body
	}
	all := make([]json.RawMessage, 0, len(events)+len(list))
	for _, e := range events {
		all = append(all, json.RawMessage(e))
	}
	all = append(all, list...)
	raw, err := json.Marshal(all)
	if err != nil {
		// An injected event that is not JSON: splice the text in as it is.
		parts := make([]string, 0, len(all))
		for _, e := range all {
			parts = append(parts, string(e))
		}
		raw = []byte("[" + strings.Join(parts, ",") + "]")
	}
	answer["delegateTaskEvents"] = raw
	out, err := json.Marshal(answer)
	if err != nil {
		return body
	}
	return out
}

// Call is one manager call the proxy saw.
type Call struct {
	Op   Op
	Path string
	At   time.Time
}

// Proxy sits between runners and a manager and injects what a network and an unwell manager do:
// lost answers (the manager acted, the runner never heard), refused connections, resets, error
// answers with Retry-After, echoed headers and rewritten bodies. It records the calls it sees.
// Its methods are safe for concurrent use.
type Proxy struct {
	target    *url.URL
	transport *http.Transport
	addr      string

	mu          sync.Mutex
	srv         *http.Server
	served      chan struct{}
	modes       map[Op]Mode
	status      int
	retryAfter  string
	lostAnswers float64
	loseNext    map[Op]int
	rewrite     Rewrite
	onLost      func(Op)
	calls       []Call
	tokens      map[string]bool
	seen        map[Op]int
	forwarded   map[Op]int
	lost        map[Op]int
	rng         *mathrand.Rand
}

// NewProxy listens on a free loopback port and forwards to target (a base URL such as the mock
// manager's).
func NewProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("proxy target %q: %w", target, err)
	}
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	p := &Proxy{
		target:    u,
		transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		modes:     map[Op]Mode{},
		status:    http.StatusServiceUnavailable,
		loseNext:  map[Op]int{},
		tokens:    map[string]bool{},
		seen:      map[Op]int{},
		forwarded: map[Op]int{},
		lost:      map[Op]int{},
		rng:       mathrand.New(mathrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:]))),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: listen: %w", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	return p, nil
}

// URL is the proxy's base URL: give it to runners as their manager endpoint.
func (p *Proxy) URL() string { return "http://" + p.addr }

func (p *Proxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.handle), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	p.srv, p.served = srv, served
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
}

// Down stops listening and drops every open connection: runners get "connection refused" until
// Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	srv, served := p.srv, p.served
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	<-served
	p.transport.CloseIdleConnections()
}

// Up listens again on the same address after Down.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return nil
	}
	var ln net.Listener
	var err error
	// The port was ours a moment ago; a lingering close can make the first tries fail.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("proxy: listen again on %s: %w", p.addr, err)
	}
	p.serve(ln)
	return nil
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.Down()
	p.transport.CloseIdleConnections()
}

// SetMode sets how calls of the given kinds (every kind when none is given) are treated.
func (p *Proxy) SetMode(m Mode, ops ...Op) {
	if len(ops) == 0 {
		ops = allOps
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, op := range ops {
		p.modes[op] = m
	}
}

// SetRefusal sets the answer of Refuse mode: the status and the Retry-After header ("" for
// none).
func (p *Proxy) SetRefusal(status int, retryAfter string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.retryAfter = status, retryAfter
}

// SetLostAnswers sets the probability that a forwarded call's answer is dropped: the manager
// acted on the call, and the runner's connection is reset instead of getting the answer.
func (p *Proxy) SetLostAnswers(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lostAnswers = rate
}

// LoseNext drops the answers of the next n forwarded calls of op.
func (p *Proxy) LoseNext(op Op, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseNext[op] += n
}

// SetOnLost installs (or, with nil, removes) a function called after each dropped answer, on the
// call's goroutine: it may, say, take the manager Down before the runner tries again.
func (p *Proxy) SetOnLost(f func(Op)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onLost = f
}

// SetRewrite installs (or, with nil, removes) a rewrite of forwarded 2xx answers.
func (p *Proxy) SetRewrite(r Rewrite) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rewrite = r
}

// Counts is what the proxy saw, per Op.
type Counts struct {
	// Seen counts every call that reached the proxy.
	Seen map[Op]int
	// Forwarded counts the calls passed on to the manager.
	Forwarded map[Op]int
	// Lost counts the forwarded calls whose answer was dropped.
	Lost map[Op]int
}

// Counts returns a snapshot of the counters.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Counts{Seen: maps.Clone(p.seen), Forwarded: maps.Clone(p.forwarded), Lost: maps.Clone(p.lost)}
}

// Seen returns how many calls of op reached the proxy so far.
func (p *Proxy) Seen(op Op) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[op]
}

// Calls returns the calls seen so far, in order, optionally only those of the given kinds.
func (p *Proxy) Calls(ops ...Op) []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(ops) == 0 {
		return slices.Clone(p.calls)
	}
	var out []Call
	for _, c := range p.calls {
		if slices.Contains(ops, c.Op) {
			out = append(out, c)
		}
	}
	return out
}

// Credentials returns every distinct Authorization credential (the part after the scheme) the
// proxy saw, so a test can look for them where they must not be.
func (p *Proxy) Credentials() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.tokens))
}

func (p *Proxy) handle(w http.ResponseWriter, r *http.Request) {
	op := OpOf(r.URL.Path)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.seen[op]++
	p.calls = append(p.calls, Call{Op: op, Path: r.URL.Path, At: time.Now()})
	if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && cred != "" {
		p.tokens[cred] = true
	}
	mode, status, retryAfter, rewrite := p.modes[op], p.status, p.retryAfter, p.rewrite
	// Whether the answer is lost is decided as the call arrives, so LoseNext applies to calls
	// made after it, never to one already in flight.
	lose := p.lostAnswers > 0 && p.rng.Float64() < p.lostAnswers
	if mode == Pass && p.loseNext[op] > 0 {
		p.loseNext[op]--
		lose = true
	}
	if mode == Lose {
		lose = true
	}
	p.mu.Unlock()

	switch mode {
	case Reset:
		resetConnection(w)
		return
	case Refuse:
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"code":"unavailable","message":"proxy: manager unavailable"}`)
		return
	case Echo:
		var echo bytes.Buffer
		_ = r.Header.Write(&echo)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(echo.Bytes())
		return
	}

	resp, answer, err := p.forward(r, body)
	if err != nil {
		// The manager reset the call or is gone: the runner sees the same.
		resetConnection(w)
		return
	}
	p.mu.Lock()
	p.forwarded[op]++
	if lose {
		p.lost[op]++
	}
	onLost := p.onLost
	p.mu.Unlock()
	if lose {
		resetConnection(w)
		if onLost != nil {
			onLost(op)
		}
		return
	}
	if rewrite != nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		answer = rewrite(op, answer)
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// forward sends the call on to the target and reads the whole answer, so the manager has acted
// on the call whatever happens to the answer afterwards.
func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	u := *p.target
	u.Path = strings.TrimSuffix(p.target.Path, "/") + r.URL.Path
	u.RawQuery = r.URL.RawQuery
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	out.Header = r.Header.Clone()
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, answer, nil
}

// resetConnection closes the client's connection with SO_LINGER 0, so it sees a reset instead of
// an answer.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (never so over HTTP/1): abort the answer, which the client sees as a
		// broken connection too.
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}
