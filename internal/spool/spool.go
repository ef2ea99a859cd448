package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
)

const (
	entryExt    = ".json"
	batchExt    = ".batch"
	doneExt     = ".done"
	batchPrefix = "batch-"
	tmpPrefix   = ".tmp-"
	lockName    = ".lock"
	corruptDir  = "corrupt"
)

// Entry is one stored result.
type Entry struct {
	Result manager.Result `json:"result"`
	// StoredAt is when the result was first stored; it expires relative to this.
	StoredAt time.Time `json:"storedAt"`
}

// Item is an entry and the key it is stored under.
type Item struct {
	Key   string
	Entry Entry
}

// Spool is a directory of results waiting for delivery. One runner process holds a spool at a
// time (an exclusive lock on the directory), so two runners never deliver the same result.
type Spool struct {
	dir    string
	lock   *os.File
	logger *slog.Logger
	mu     sync.Mutex
	count  int
	// batches maps the key of every entry stored in a batch file to that batch.
	batches map[string]*batch
	// queue holds the Puts waiting for the next commit; committing is set while one runs.
	queue      []*pending
	committing bool
	// openDone counts the .done files held open.
	openDone atomic.Int64
}

// Open opens (creating it when needed, mode 0700) the spool in dir and takes its lock.
func Open(dir string, logger *slog.Logger) (*Spool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Wrap(errs.CodeInvalidConfig, "open spool "+dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.CodeInvalidConfig, "open spool "+dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, errs.Newf(errs.CodeInvalidConfig, "open spool "+dir,
			"another runner is using it (%v); give each runner its own DLITE_SPOOL_DIR", err)
	}
	s := &Spool{dir: dir, lock: lock, logger: logger, batches: map[string]*batch{}}
	return s, nil
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Close releases the spool's lock. Stored entries stay for the next Open.
func (s *Spool) Close() error {
	if s.lock == nil {
		return nil
	}
	s.mu.Lock()
	for _, b := range s.batches {
		b.mu.Lock()
		if b.done != nil {
			_ = b.done.Close()
			b.done = nil
			s.openDone.Add(-1)
		}
		b.mu.Unlock()
	}
	s.mu.Unlock()
	err := s.lock.Close() // closing the descriptor releases the flock
	s.lock = nil
	return err
}

// Len returns the number of stored entries.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Put stores r durably and returns its key: after Put returns the result survives a crash, and
// a crash during Put leaves either the whole entry or none of it. An entry is written to a
// temporary file, fsynced, renamed into place and the directory fsynced. Puts that arrive while
// another one is being written are committed together (a group commit): their entries go into one
// batch file with one fsync of the file and one of the directory, which is what makes a busy
// runner's results cheap to keep. A Put that finds nothing in progress is written alone, in a file
// named after its key, without waiting for company.
func (s *Spool) Put(r manager.Result, storedAt time.Time) (string, error) {
	key := fmt.Sprintf("%019d-%s-%s", storedAt.UnixNano(), safe(r.TaskID), uuid.NewString()[:8])
	data, err := json.Marshal(Entry{Result: r, StoredAt: storedAt})
	if err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	p := &pending{key: key, data: data, done: make(chan commitResult, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, p)
	lead := !s.committing
	s.committing = true
	s.mu.Unlock()
	if !lead {
		res := <-p.done
		if !res.lead {
			if res.err != nil {
				return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, res.err)
			}
			return key, nil
		}
	}
	// This Put leads: it commits everything queued so far, its own entry included, then hands the
	// lead to the first Put that queued meanwhile.
	s.mu.Lock()
	group := s.queue
	s.queue = nil
	s.mu.Unlock()
	b, err := s.commit(group)
	s.mu.Lock()
	if err == nil {
		s.count += len(group)
		if b != nil {
			for _, g := range group {
				s.batches[g.key] = b
			}
		}
	}
	var next *pending
	if len(s.queue) > 0 {
		next = s.queue[0]
	} else {
		s.committing = false
	}
	s.mu.Unlock()
	for _, g := range group {
		if g != p {
			g.done <- commitResult{err: err}
		}
	}
	if next != nil {
		next.done <- commitResult{lead: true}
	}
	if err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	return key, nil
}

// pending is a Put waiting for its entry to be committed.
type pending struct {
	key  string
	data []byte
	done chan commitResult
}

// commitResult tells a waiting Put how its commit went, or that it now leads the next one.
type commitResult struct {
	lead bool
	err  error
}

// batch is a file holding the entries of one group commit. Its entries are removed one by one
// (each removal is appended to the batch's .done file); the files go once every entry is removed.
type batch struct {
	name string // the file name without extension
	mu   sync.Mutex
	live int  // entries not removed yet; guarded by Spool.mu
	gone bool // the files are deleted; guarded by mu
	// done is the .done file, kept open between the removals of the batch's entries while few
	// batches have one open; guarded by mu.
	done *os.File
}

// maxOpenDone bounds the .done files kept open at once: batches whose entries wait long for
// delivery must not hold a descriptor each.
const maxOpenDone = 64

// commit writes a group of entries durably: alone in its own file, or together in a batch file.
func (s *Spool) commit(group []*pending) (*batch, error) {
	if len(group) == 1 {
		if err := writeFileSync(s.dir, group[0].key+entryExt, group[0].data); err != nil {
			return nil, err
		}
		return nil, syncDir(s.dir)
	}
	var buf bytes.Buffer
	for _, g := range group {
		// Keys hold only [0-9A-Za-z_-], so they need no escaping.
		buf.WriteString(`{"key":"`)
		buf.WriteString(g.key)
		buf.WriteString(`","entry":`)
		buf.Write(g.data)
		buf.WriteString("}\n")
	}
	b := &batch{name: batchPrefix + group[0].key, live: len(group)}
	if err := writeFileSync(s.dir, b.name+batchExt, buf.Bytes()); err != nil {
		return nil, err
	}
	return b, syncDir(s.dir)
}

// Remove deletes a delivered entry. Nothing is fsynced for it: should a crash undo the removal,
// the entry is delivered again at the next start, exactly as when the crash comes between the
// delivery and the removal, which a runner must handle anyway (the manager takes a result it
// already has as a repeat). The removal of an entry of a batch is appended to the batch's .done
// file, which a process crash cannot lose (it is in the page cache); only losing power can, and
// then the entries removed in the last seconds are delivered again. The next commit's directory
// fsync makes the removals of whole files durable too.
func (s *Spool) Remove(key string) error {
	s.mu.Lock()
	b, inBatch := s.batches[key]
	if inBatch {
		delete(s.batches, key)
		b.live--
		s.count--
	}
	last := inBatch && b.live == 0
	s.mu.Unlock()
	if inBatch {
		return s.removeFromBatch(b, key, last)
	}
	err := os.Remove(filepath.Join(s.dir, key+entryExt))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
	}
	if err == nil {
		s.mu.Lock()
		s.count--
		s.mu.Unlock()
	}
	return nil
}

func (s *Spool) removeFromBatch(b *batch, key string, last bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return nil
	}
	if last {
		b.gone = true
		if b.done != nil {
			_ = b.done.Close()
			b.done = nil
			s.openDone.Add(-1)
		}
		// The batch goes first: a crash between the two leaves a .done file alone, which Load
		// deletes, never a batch without its record of removals.
		err := os.Remove(filepath.Join(s.dir, b.name+batchExt))
		if err == nil || errors.Is(err, os.ErrNotExist) {
			err = os.Remove(filepath.Join(s.dir, b.name+doneExt))
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
		}
		return nil
	}
	if b.done == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, b.name+doneExt), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
		}
		b.done = f
		s.openDone.Add(1)
	}
	_, err := b.done.WriteString(key + "\n")
	if err != nil || s.openDone.Load() > maxOpenDone {
		if cerr := b.done.Close(); err == nil {
			err = cerr
		}
		b.done = nil
		s.openDone.Add(-1)
	}
	if err != nil {
		return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
	}
	return nil
}

// Load returns every stored entry, oldest first. Entries that cannot be read or decoded are moved
// to the corrupt/ subdirectory with a log line (a batch file whose every entry is corrupt goes
// there whole; a corrupt entry among good ones is logged and skipped), and leftovers of
// interrupted writes are removed; neither stops the others from loading.
func (s *Spool) Load() ([]Item, error) {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, errs.Wrap(errs.CodeUnknown, "read spool "+s.dir, err)
	}
	var items []Item
	var batchNames []string
	doneFiles := map[string]bool{}
	for _, de := range names {
		name := de.Name()
		switch {
		case de.IsDir() || name == lockName:
			continue
		case strings.HasPrefix(name, tmpPrefix):
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		case strings.HasSuffix(name, batchExt):
			batchNames = append(batchNames, strings.TrimSuffix(name, batchExt))
			continue
		case strings.HasSuffix(name, doneExt):
			doneFiles[strings.TrimSuffix(name, doneExt)] = true
			continue
		case !strings.HasSuffix(name, entryExt):
			continue
		}
		key := strings.TrimSuffix(name, entryExt)
		entry, err := readEntry(filepath.Join(s.dir, name))
		if err != nil {
			s.quarantine(name, err)
			continue
		}
		items = append(items, Item{Key: key, Entry: entry})
	}
	batches := map[string]*batch{}
	for _, name := range batchNames {
		delete(doneFiles, name)
		for _, it := range s.loadBatch(name) {
			items = append(items, it.item)
			batches[it.item.Key] = it.batch
		}
	}
	for name := range doneFiles {
		// The removals of a batch that is gone.
		_ = os.Remove(filepath.Join(s.dir, name+doneExt))
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	s.mu.Lock()
	s.count = len(items)
	s.batches = batches
	s.mu.Unlock()
	return items, nil
}

type batchItem struct {
	item  Item
	batch *batch
}

// loadBatch returns the entries of a batch file that were not removed.
func (s *Spool) loadBatch(name string) []batchItem {
	data, err := os.ReadFile(filepath.Join(s.dir, name+batchExt))
	if err != nil {
		s.quarantine(name+batchExt, err)
		return nil
	}
	removed := map[string]bool{}
	if done, err := os.ReadFile(filepath.Join(s.dir, name+doneExt)); err == nil {
		for line := range strings.Lines(string(done)) {
			removed[strings.TrimSpace(line)] = true
		}
	}
	b := &batch{name: name}
	var out []batchItem
	total, bad := 0, 0
	for line := range bytes.Lines(data) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		total++
		var rec struct {
			Key   string          `json:"key"`
			Entry json.RawMessage `json:"entry"`
		}
		err := json.Unmarshal(line, &rec)
		var entry Entry
		if err == nil {
			if rec.Key == "" {
				err = errors.New("batch line without a key")
			} else {
				entry, err = decodeEntry(rec.Entry)
			}
		}
		if err != nil {
			bad++
			s.logger.Error("corrupt spool entry skipped", "batch", name+batchExt, "line", total, "cause", err)
			continue
		}
		if removed[rec.Key] {
			continue
		}
		out = append(out, batchItem{item: Item{Key: rec.Key, Entry: entry}, batch: b})
	}
	b.live = len(out)
	switch {
	case bad == total:
		s.quarantine(name+batchExt, errors.New("no entry of the batch can be decoded"))
		_ = os.Remove(filepath.Join(s.dir, name+doneExt))
	case len(out) == 0:
		// Every entry was delivered; only the files were left.
		_ = os.Remove(filepath.Join(s.dir, name+batchExt))
		_ = os.Remove(filepath.Join(s.dir, name+doneExt))
	}
	return out
}

func readEntry(path string) (Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Entry{}, err
	}
	return decodeEntry(data)
}

// decodeEntry decodes an entry strictly: unknown fields or a missing task id, code or store time
// mean the entry is not one this spool wrote.
func decodeEntry(data []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	if e.Result.TaskID == "" || e.Result.Code == "" || e.StoredAt.IsZero() {
		return e, errors.New("entry lacks a task id, a code or a store time")
	}
	return e, nil
}

func (s *Spool) quarantine(name string, cause error) {
	dst := filepath.Join(s.dir, corruptDir)
	err := os.MkdirAll(dst, 0o700)
	if err == nil {
		err = os.Rename(filepath.Join(s.dir, name), filepath.Join(dst, name))
	}
	if err != nil {
		s.logger.Error("corrupt spool entry could not be moved aside", "entry", name, "cause", cause, "err", err)
		return
	}
	s.logger.Error("corrupt spool entry moved aside", "entry", name, "to", dst, "cause", cause)
}

// safe keeps a task id usable in a file name.
func safe(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func writeFileSync(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The caller makes the new name durable with a directory fsync.
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
