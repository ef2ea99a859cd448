package spool

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
)

const (
	lockName   = ".lock"
	corruptDir = "corrupt"
)

// limits are the sizes that shape the log. Tests shrink them to exercise rotation and compaction
// with a handful of entries.
type limits struct {
	// segmentSize is the size past which the next commit starts a new segment.
	segmentSize int64
	// maxOld is how many segments besides the one being appended to may be kept before the
	// entries that pin the oldest of them are copied forward so that they can go.
	maxOld int
}

var defaultLimits = limits{segmentSize: 4 << 20, maxOld: 4}

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

// Spool is a directory of results waiting for delivery, kept in an append-only log. One runner
// process holds a spool at a time (an exclusive lock on the directory), so two runners never
// deliver the same result.
type Spool struct {
	dir    string
	logger *slog.Logger
	lim    limits

	// io serialises work on the files: a commit, Load's reads, Close. It guards lock, segs,
	// nextSeq, buf and the file-side fields of every segment.
	io      sync.Mutex
	lock    *os.File
	segs    []*segment // oldest first; records are appended to the last one
	nextSeq uint64
	buf     []byte // the write buffer of the last commit, reused by the next
	// writes and syncs count the write and fdatasync calls on the log, to check the cost of a
	// commit.
	writes, syncs int

	mu sync.Mutex
	// index maps the key of every live entry to where its put record is. It and the live counts
	// of the segments are guarded by mu.
	index map[string]loc
	// queue holds the operations waiting for the next commit; committing is set while one runs.
	queue      []*pending
	committing bool
	closed     bool
}

// Open opens (creating it when needed, mode 0700) the spool in dir and takes its lock. It reads
// the log, dropping the end of a write a crash interrupted, and carries the entries of a spool
// written in the earlier one-file-per-entry format into the log.
func Open(dir string, logger *slog.Logger) (*Spool, error) {
	return open(dir, logger, defaultLimits)
}

func open(dir string, logger *slog.Logger, lim limits) (*Spool, error) {
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
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, errs.Newf(errs.CodeInvalidConfig, "open spool "+dir,
			"another runner is using it (%v); give each runner its own DLITE_SPOOL_DIR", err)
	}
	s := &Spool{dir: dir, logger: logger, lim: lim, lock: lock, index: map[string]loc{}, nextSeq: 1}
	if err := s.recover(); err != nil {
		_ = s.Close()
		return nil, errs.Wrap(errs.CodeUnknown, "open spool "+dir, err)
	}
	if err := s.migrate(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// Close makes what is written durable and releases the spool's lock. Stored entries stay for the
// next Open; Put, Write, Sync and Remove fail once Close has been called.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// A commit in progress finishes first; the ones queued behind it see the spool closed.
	s.io.Lock()
	defer s.io.Unlock()
	var err error
	if act := s.active(); act != nil && act.f != nil {
		// What Write stored without an fsync becomes durable when the runner stops.
		if act.size > act.synced && !act.broken {
			s.syncs++
			err = syncData(act.f)
		}
		if cerr := act.f.Close(); err == nil {
			err = cerr
		}
		act.f = nil
	}
	if cerr := s.lock.Close(); err == nil { // closing the descriptor releases the lock
		err = cerr
	}
	return err
}

// Syncs returns how many fdatasyncs the log has had since Open: what keeping results durable has
// cost.
func (s *Spool) Syncs() int {
	s.io.Lock()
	defer s.io.Unlock()
	return s.syncs
}

// Len returns the number of stored entries.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Put stores r durably and returns its key: after Put returns the result survives a crash or a
// power loss, and a crash during Put leaves either the whole entry or none of it. The entry is
// appended to the log as one checksummed record. Puts that arrive while a commit runs are
// committed together by the next one (a group commit): one write and one fdatasync for the
// group, which is what makes a busy runner's results cheap to keep.
func (s *Spool) Put(r manager.Result, storedAt time.Time) (string, error) {
	return s.put(r, storedAt, true)
}

// Write stores r as Put does but returns once its record is written to the log, without waiting
// for an fdatasync: the entry survives a crash of the process (the kernel has it), not a power
// loss or a crash of the kernel until Sync, SyncAll or Close makes it durable. A result that is
// delivered and removed within moments never needs the fsync.
func (s *Spool) Write(r manager.Result, storedAt time.Time) (string, error) {
	return s.put(r, storedAt, false)
}

// Sync makes the entry stored under key durable, if it is still stored. Syncs that arrive while a
// commit runs share the next one; an entry already durable costs nothing.
func (s *Spool) Sync(key string) error {
	s.mu.Lock()
	_, ok := s.index[key]
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errs.Wrap(errs.CodeUnknown, "sync spooled result "+key, os.ErrClosed)
	}
	if !ok {
		return nil
	}
	if err := s.submit(&pending{durable: true}); err != nil {
		return errs.Wrap(errs.CodeUnknown, "sync spooled result "+key, err)
	}
	return nil
}

// SyncAll makes everything written to the spool so far durable: one fdatasync when anything
// written is not yet on stable storage, nothing otherwise.
func (s *Spool) SyncAll() error {
	if err := s.submit(&pending{durable: true}); err != nil {
		return errs.Wrap(errs.CodeUnknown, "sync spool "+s.dir, err)
	}
	return nil
}

func (s *Spool) put(r manager.Result, storedAt time.Time, durable bool) (string, error) {
	key := fmt.Sprintf("%019d-%s-%s", storedAt.UnixNano(), safe(r.TaskID), uuid.NewString()[:8])
	entry, err := json.Marshal(Entry{Result: r, StoredAt: storedAt})
	if err == nil && len(entry) > maxPayload-len(key)-64 {
		err = fmt.Errorf("entry of %d bytes is larger than a record may be", len(entry))
	}
	if err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	p := &pending{durable: durable}
	p.data = appendPut(make([]byte, 0, headerSize+len(putPrefix)+len(key)+len(putMiddle)+len(entry)+3), key, entry)
	p.one[0] = putRef{key: key, n: len(p.data)}
	p.puts = p.one[:]
	if err := s.submit(p); err != nil {
		return "", errs.Wrap(errs.CodeUnknown, "spool result of task "+r.TaskID, err)
	}
	return key, nil
}

// Remove deletes a delivered entry by appending a delete record to the log. Nothing is fsynced
// for it, but the record is written to the kernel before Remove returns, so a crash of the
// process cannot undo the removal; a power loss can, and then the entry is delivered again at the
// next start, exactly as when a crash comes between a delivery and its removal, which a runner
// must handle anyway (the manager takes a result it already has as a repeat). Removing a key that
// is not stored does nothing.
func (s *Spool) Remove(key string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, os.ErrClosed)
	}
	l, ok := s.index[key]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	s.unindex(key, l)
	s.mu.Unlock()
	p := &pending{data: appendDel(nil, key)}
	if err := s.submit(p); err != nil {
		return errs.Wrap(errs.CodeUnknown, "remove spooled result "+key, err)
	}
	return nil
}

// Load returns every stored entry, oldest first. A record found corrupt is logged and set aside
// (its segment is copied to the corrupt/ subdirectory) without stopping the others from loading;
// entries left in the earlier one-file-per-entry format are carried into the log first.
func (s *Spool) Load() ([]Item, error) {
	if err := s.migrate(); err != nil {
		return nil, err
	}
	s.io.Lock()
	defer s.io.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errs.Wrap(errs.CodeUnknown, "load spool "+s.dir, os.ErrClosed)
	}
	refs := make([]keyLoc, 0, len(s.index))
	for k, l := range s.index {
		refs = append(refs, keyLoc{key: k, loc: l})
	}
	s.mu.Unlock()
	// Read in file order, one segment after the other.
	slices.SortFunc(refs, func(a, b keyLoc) int {
		return cmp.Or(cmp.Compare(a.loc.seg.seq, b.loc.seg.seq), cmp.Compare(a.loc.off, b.loc.off))
	})
	items := make([]Item, 0, len(refs))
	var r segmentReader
	defer r.close()
	for _, ref := range refs {
		buf := make([]byte, ref.loc.n)
		err := r.readAt(s.dir, ref.loc.seg, buf, ref.loc.off)
		if err != nil && !isDamage(err) {
			// The entry stays stored and is tried again at the next start.
			s.logger.Error("spooled result could not be read; it stays for the next start",
				"key", ref.key, "segment", ref.loc.seg.name, "err", err)
			continue
		}
		var entry Entry
		if err == nil {
			var rec record
			var n int
			rec, n, err = parseRecord(buf)
			if err == nil && (n != len(buf) || rec.Op != opPut || rec.Key != ref.key) {
				err = errRecordMoved
			}
			entry = rec.entry
		}
		if err != nil {
			s.lose(ref, err)
			continue
		}
		items = append(items, Item{Key: ref.key, Entry: entry})
	}
	slices.SortFunc(items, func(a, b Item) int { return cmp.Compare(a.Key, b.Key) })
	return items, nil
}

// lose drops an entry whose record turned out to be corrupt after the log was read: nothing of it
// can be delivered, and it must not pin its segment forever.
func (s *Spool) lose(ref keyLoc, cause error) {
	s.mu.Lock()
	if cur, ok := s.index[ref.key]; ok && cur == ref.loc {
		s.unindex(ref.key, cur)
	}
	s.mu.Unlock()
	to := s.copyAside(ref.loc.seg.name, nil)
	s.logger.Error("corrupt spool record skipped; its result is lost",
		"key", ref.key, "segment", ref.loc.seg.name, "offset", ref.loc.off, "cause", cause, "copied_to", to)
}

// unindex forgets a live entry; s.mu is held.
func (s *Spool) unindex(key string, l loc) {
	delete(s.index, key)
	l.seg.live--
	l.seg.liveBytes -= int64(l.n)
}

// place records where the put record of key is; s.mu is held. A key already indexed is one whose
// record was copied forward: the newer copy replaces the older.
func (s *Spool) place(key string, l loc) {
	if old, ok := s.index[key]; ok {
		old.seg.live--
		old.seg.liveBytes -= int64(old.n)
	}
	s.index[key] = l
	l.seg.live++
	l.seg.liveBytes += int64(l.n)
}

// safe keeps a task id usable in a key.
func safe(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !plainKeyByte(c) {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func plainKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
