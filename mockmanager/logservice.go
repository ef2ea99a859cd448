package mockmanager

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dlite-dev/dlite/errs"
	adminapi "github.com/dlite-dev/dlite/gen/admin"
	logapi "github.com/dlite-dev/dlite/gen/logservice"
)

// LogServicePath is the path the mock log service is mounted under on the mock manager's server:
// its base URL is the server's URL followed by this path.
const LogServicePath = "/log-service"

// DefaultLogLinkTTL is how long a signed upload link of the mock log service works when
// Options.LogLinkTTL is 0.
const DefaultLogLinkTTL = 10 * time.Minute

// The admin API's log models, under names that read well from this package.
type (
	// LogLine is one log line a runner sent to the mock log service.
	LogLine = adminapi.LogLine
	// LogKey is a log key and a summary of what the mock log service holds for it.
	LogKey = adminapi.LogKey
	// LogStream is the live stream of a key: its lines, and whether it is still open.
	LogStream = adminapi.LogStream
	// LogBlob is the permanent log of a key.
	LogBlob = adminapi.LogBlob
	// LogBlobSource says how a permanent log arrived: service, link or snapshot.
	LogBlobSource = adminapi.LogBlobSource
	// LogConfig is a CI stage's log_config pointing at the mock log service; it marshals to the
	// wire's own names (url, account_id, token).
	LogConfig = adminapi.LogConfig
)

// How a permanent log arrived.
const (
	// BlobViaService: uploaded through the service (POST /blob, indirect upload).
	BlobViaService LogBlobSource = adminapi.LogBlobSourceService
	// BlobViaLink: uploaded to a signed link (direct upload).
	BlobViaLink LogBlobSource = adminapi.LogBlobSourceLink
	// BlobViaSnapshot: copied from the live stream by a close with snapshot.
	BlobViaSnapshot LogBlobSource = adminapi.LogBlobSourceSnapshot
)

// logService is the state of the mock log service: live streams and permanent logs by stored key
// (`<accountID>/<key>`), and the key signing its upload links. Its lock is its own, apart from the
// manager's.
type logService struct {
	account string
	token   []byte
	signKey []byte
	linkTTL time.Duration
	now     func() time.Time
	// line is the contract's Line schema; every line of an NDJSON upload is checked against it.
	line *openapi3.Schema

	mu      sync.Mutex
	streams map[string]*logStream
	blobs   map[string]*logBlob
	// changed is closed and replaced whenever a stream or blob changes, waking tails and waits.
	changed chan struct{}
}

type logStream struct {
	account, key string
	open         bool
	opened       time.Time
	closed       *time.Time
	lines        []LogLine
}

type logBlob struct {
	account, key string
	via          LogBlobSource
	uploaded     time.Time
	size         int
	lines        []LogLine
}

func newLogService(account, token string, linkTTL time.Duration, now func() time.Time) (*logService, error) {
	spec, err := logapi.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load log service contract: %w", err)
	}
	ref := spec.Components.Schemas["Line"]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("log service contract has no Line schema")
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	if linkTTL <= 0 {
		linkTTL = DefaultLogLinkTTL
	}
	return &logService{
		account: account,
		token:   []byte(token),
		signKey: key,
		linkTTL: linkTTL,
		now:     now,
		line:    ref.Value,
		streams: map[string]*logStream{},
		blobs:   map[string]*logBlob{},
		changed: make(chan struct{}),
	}, nil
}

func storedKey(account, key string) string { return account + "/" + key }

func (l *logService) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// open starts the stream of a key afresh.
func (l *logService) open(account, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.streams[storedKey(account, key)] = &logStream{account: account, key: key, open: true, opened: l.now().UTC()}
	l.notifyLocked()
}

// write appends lines to the open stream of a key; it reports false, keeping nothing, when the key
// has no open stream.
func (l *logService) write(account, key string, lines []logapi.Line) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.streams[storedKey(account, key)]
	if !ok || !st.open {
		return false
	}
	for _, line := range lines {
		st.lines = append(st.lines, adminLine(line))
	}
	l.notifyLocked()
	return true
}

// close closes the open stream of a key, or with prefix every open stream whose key starts with
// it; with snapshot each one's lines become its key's permanent log first. It returns the keys
// it closed.
func (l *logService) close(account, key string, snapshot, prefix bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now().UTC()
	var closed []string
	for id, st := range l.streams {
		if !st.open || st.account != account {
			continue
		}
		if prefix && !strings.HasPrefix(st.key, key) || !prefix && st.key != key {
			continue
		}
		st.open = false
		st.closed = &now
		if snapshot {
			size := 0
			for _, line := range st.lines {
				b, _ := json.Marshal(line) // a LogLine always marshals
				size += len(b) + 1
			}
			l.blobs[id] = &logBlob{account: account, key: st.key, via: BlobViaSnapshot, uploaded: now,
				size: size, lines: slices.Clone(st.lines)}
		}
		closed = append(closed, st.key)
	}
	slices.Sort(closed)
	if len(closed) > 0 {
		l.notifyLocked()
	}
	return closed
}

// store checks an NDJSON body line by line against the contract's Line schema and, when every line
// fits, keeps it as the permanent log of a key. A body that does not fit changes nothing; the error
// names the first line at fault.
func (l *logService) store(account, key string, via LogBlobSource, body []byte) error {
	var lines []LogLine
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), len(body)+1)
	for n := 1; sc.Scan(); n++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(text, &v); err != nil {
			return fmt.Errorf("NDJSON line %d is not JSON: %w", n, err)
		}
		if err := l.line.VisitJSON(v); err != nil {
			return fmt.Errorf("NDJSON line %d is not a Line: %s", n, schemaReason(err))
		}
		var line logapi.Line
		if err := json.Unmarshal(text, &line); err != nil {
			return fmt.Errorf("NDJSON line %d is not a Line: %w", n, err)
		}
		lines = append(lines, adminLine(line))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read NDJSON: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blobs[storedKey(account, key)] = &logBlob{account: account, key: key, via: via,
		uploaded: l.now().UTC(), size: len(body), lines: lines}
	l.notifyLocked()
	return nil
}

// schemaReason is a schema error's reason and field, without the schema dump.
func schemaReason(err error) string {
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		if path := se.JSONPointer(); len(path) > 0 {
			return fmt.Sprintf("field %s: %s", strings.Join(path, "/"), se.Reason)
		}
		return se.Reason
	}
	return err.Error()
}

// sign returns the signature of an upload link for a key that works until expires.
func (l *logService) sign(account, key string, expires int64) string {
	m := hmac.New(sha256.New, l.signKey)
	// Lengths first, so no two different (account, key) pairs sign the same bytes.
	fmt.Fprintf(m, "%d:%s|%d:%s|%d", len(account), account, len(key), key, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// link returns a signed upload link for a key, under base (the log service's URL as the client
// reached it), and when it expires.
func (l *logService) link(base, account, key string) (string, time.Time) {
	expires := l.now().Add(l.linkTTL).UTC().Truncate(time.Second)
	q := url.Values{
		"accountID": {account},
		"key":       {key},
		"expires":   {strconv.FormatInt(expires.Unix(), 10)},
		"signature": {l.sign(account, key, expires.Unix())},
	}
	return base + "/storage/upload?" + q.Encode(), expires
}

// checkLink reports why a link's parameters are refused, or "" when they are good.
func (l *logService) checkLink(account, key string, expires int64, signature string) string {
	want := l.sign(account, key, expires)
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return "the link's signature does not match its account, key and expiry"
	}
	if l.now().Unix() > expires {
		return fmt.Sprintf("the link expired at %s", time.Unix(expires, 0).UTC().Format(time.RFC3339))
	}
	return ""
}

func adminLine(line logapi.Line) LogLine {
	out := LogLine{Pos: line.Pos, Out: line.Out, Time: line.Time, Level: line.Level}
	if line.Args != nil {
		args := make(map[string]string, len(*line.Args))
		for k, v := range *line.Args {
			args[k] = v
		}
		out.Args = &args
	}
	return out
}

func (st *logStream) view() LogStream {
	return LogStream{AccountId: st.account, Key: st.key, Open: st.open, Opened: st.opened, Closed: st.closed,
		Lines: slices.Clone(st.lines)}
}

func (b *logBlob) view() LogBlob {
	return LogBlob{AccountId: b.account, Key: b.key, Via: b.via, Uploaded: b.uploaded, Lines: slices.Clone(b.lines)}
}

// LogToken returns the token the mock log service accepts: put it in a stage's log_config
// together with AccountID and the log service URL (Running.LogServiceURL, TestServer.LogServiceURL).
func (s *Server) LogToken() string { return string(s.logs.token) }

// LogConfig returns the log_config a CI stage needs to send its logs to the mock log service
// at logServiceURL (Running.LogServiceURL, TestServer.LogServiceURL).
func (s *Server) LogConfig(logServiceURL string) LogConfig {
	return LogConfig{Url: logServiceURL, AccountId: s.accountID, Token: s.LogToken()}
}

// LogKeys returns every key the mock log service holds a stream or a permanent log for, sorted by
// account and key; given a prefix, only the keys (of any account) that start with it.
func (s *Server) LogKeys(prefix string) []LogKey {
	l := s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	byID := map[string]*LogKey{}
	entry := func(account, key string) *LogKey {
		id := storedKey(account, key)
		if k, ok := byID[id]; ok {
			return k
		}
		k := &LogKey{AccountId: account, Key: key}
		byID[id] = k
		return k
	}
	for _, st := range l.streams {
		if strings.HasPrefix(st.key, prefix) {
			entry(st.account, st.key).Stream = &adminapi.LogStreamSummary{Open: st.open, Lines: len(st.lines)}
		}
	}
	for _, b := range l.blobs {
		if strings.HasPrefix(b.key, prefix) {
			entry(b.account, b.key).Blob = &adminapi.LogBlobSummary{Via: b.via, Lines: len(b.lines), Bytes: b.size}
		}
	}
	out := make([]LogKey, 0, len(byID))
	for _, k := range byID {
		out = append(out, *k)
	}
	slices.SortFunc(out, func(a, b LogKey) int {
		return strings.Compare(storedKey(a.AccountId, a.Key), storedKey(b.AccountId, b.Key))
	})
	return out
}

// Stream returns the live stream of a key: the lines written so far and whether it is open. A
// closed stream keeps its lines until the key is opened again. An empty account means the mock
// manager's own. It fails with an error matching errs.ErrNotFound when the key was never opened.
func (s *Server) Stream(account, key string) (LogStream, error) {
	if account == "" {
		account = s.accountID
	}
	l := s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.streams[storedKey(account, key)]
	if !ok {
		return LogStream{}, errs.New(errs.CodeNotFound, "log stream "+storedKey(account, key), "no stream of that key was opened")
	}
	return st.view(), nil
}

// StreamLines returns the lines written to the live stream of a key so far; see Stream.
func (s *Server) StreamLines(account, key string) ([]LogLine, error) {
	st, err := s.Stream(account, key)
	return st.Lines, err
}

// Blob returns the permanent log of a key: uploaded through the service or a signed link, or
// copied from its stream by a close with snapshot. An empty account means the mock manager's own.
// It fails with an error matching errs.ErrNotFound when the key has none.
func (s *Server) Blob(account, key string) (LogBlob, error) {
	if account == "" {
		account = s.accountID
	}
	l := s.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.blobs[storedKey(account, key)]
	if !ok {
		return LogBlob{}, errs.New(errs.CodeNotFound, "log blob "+storedKey(account, key), "no permanent log was stored for that key")
	}
	return b.view(), nil
}

// WaitBlob waits until a key has a permanent log and returns it; it fails with ctx's error when
// ctx ends first. An empty account means the mock manager's own.
func (s *Server) WaitBlob(ctx context.Context, account, key string) (LogBlob, error) {
	if account == "" {
		account = s.accountID
	}
	l := s.logs
	for {
		l.mu.Lock()
		b, ok := l.blobs[storedKey(account, key)]
		var view LogBlob
		if ok {
			view = b.view()
		}
		changed := l.changed
		l.mu.Unlock()
		if ok {
			return view, nil
		}
		select {
		case <-ctx.Done():
			return LogBlob{}, fmt.Errorf("wait for the permanent log of %s: %w", storedKey(account, key), ctx.Err())
		case <-changed:
		}
	}
}

// LogText joins the text of lines as a reader of the log sees it: one line of text per line,
// whether or not the runner trimmed the newlines.
func LogText(lines []LogLine) string {
	var b strings.Builder
	for _, line := range lines {
		b.WriteString(line.Out)
		if !strings.HasSuffix(line.Out, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
