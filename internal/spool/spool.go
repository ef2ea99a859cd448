package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
)

const (
	entryExt   = ".json"
	tmpPrefix  = ".tmp-"
	lockName   = ".lock"
	corruptDir = "corrupt"
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
	s := &Spool{dir: dir, lock: lock, logger: logger}
	return s, nil
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Close releases the spool's lock. Stored entries stay for the next Open.
func (s *Spool) Close() error {
	if s.lock == nil {
		return nil
	}
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

// Put stores r durably and returns its key: the entry is written to a temporary file, fsynced,
// renamed into place and the directory fsynced, so after Put returns the result survives a crash,
// and a crash during Put leaves either the whole entry or none of it.
func (s *Spool) Put(r manager.Result, storedAt time.Time) (string, error) {
	key := fmt.Sprintf("%019d-%s-%s", storedAt.UnixNano(), safe(r.TaskID), uuid.NewString()[:8])
	data, err := json.Marshal(Entry{Result: r, StoredAt: storedAt})
	if err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	if err := writeFileSync(s.dir, key+entryExt, data); err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	s.mu.Lock()
	s.count++
	s.mu.Unlock()
	return key, nil
}

// Remove deletes a delivered entry.
func (s *Spool) Remove(key string) error {
	err := os.Remove(filepath.Join(s.dir, key+entryExt))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
	}
	if err == nil {
		s.mu.Lock()
		s.count--
		s.mu.Unlock()
		return syncDir(s.dir)
	}
	return nil
}

// Load returns every stored entry, oldest first. Entries that cannot be read or decoded are moved
// to the corrupt/ subdirectory with a log line, and leftovers of interrupted writes are removed;
// neither stops the others from loading.
func (s *Spool) Load() ([]Item, error) {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, errs.Wrap(errs.CodeUnknown, "read spool "+s.dir, err)
	}
	var items []Item
	for _, de := range names {
		name := de.Name()
		switch {
		case de.IsDir() || name == lockName:
			continue
		case strings.HasPrefix(name, tmpPrefix):
			_ = os.Remove(filepath.Join(s.dir, name))
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
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	s.mu.Lock()
	s.count = len(items)
	s.mu.Unlock()
	return items, nil
}

func readEntry(path string) (Entry, error) {
	var e Entry
	data, err := os.ReadFile(path)
	if err != nil {
		return e, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
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
	defer os.Remove(tmp) // no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
