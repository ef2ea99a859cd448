package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	recordExt    = ".json"
	tempPrefix   = ".tmp-"
	storeDirMode = 0o700
)

// FileStore keeps each stage record in a JSON file of its own, mode 0600, in a directory of mode
// 0700. A file's name is the SHA-256 of the stage id in hex, so no id can name a path. Every
// write goes to a temporary file that is synced, renamed over the record and followed by a sync of
// the directory, so a crash at any point leaves either the old record or the new one, never half
// of one. Updates of one stage are serialised within the process; one runner process owns a
// store's directory.
type FileStore struct {
	dir   string
	locks keyedMutex
}

var _ Store = (*FileStore)(nil)

// NewFileStore opens (creating it when missing) the store in dir and removes temporary files a
// crash left behind.
func NewFileStore(dir string) (*FileStore, error) {
	if dir == "" {
		return nil, errors.New("stage store: no directory given")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("stage store %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, storeDirMode); err != nil {
		return nil, fmt.Errorf("stage store: create %s: %w", dir, err)
	}
	// The records hold secrets: keep the directory private even when it existed before.
	if err := os.Chmod(dir, storeDirMode); err != nil {
		return nil, fmt.Errorf("stage store: restrict %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("stage store: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("stage store: remove leftover %s: %w", e.Name(), err)
			}
		}
	}
	return &FileStore{dir: dir}, nil
}

// Dir is the store's directory.
func (s *FileStore) Dir() string { return s.dir }

// StageKey is the name the engine derives from a stage id for its files and directories: the
// SHA-256 of the id in hex, safe as a path element whatever the id holds.
func StageKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func (s *FileStore) path(id string) string {
	return filepath.Join(s.dir, StageKey(id)+recordExt)
}

func (s *FileStore) lock(id string) func() { return s.locks.lock(id) }

// Create stores a new record; an existing one gives an error matching ErrStageExists.
func (s *FileStore) Create(ctx context.Context, st *Stage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := st.Spec.ID
	if id == "" {
		return fmt.Errorf("%w: the stage has no id", ErrInvalid)
	}
	defer s.lock(id)()
	if _, err := os.Stat(s.path(id)); err == nil {
		return fmt.Errorf("stage %s: %w", id, ErrStageExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stage %s: %w", id, err)
	}
	now := time.Now().UTC()
	if st.Created.IsZero() {
		st.Created = now
	}
	st.Updated = now
	return s.write(st)
}

// Get returns the record of a stage, or an error matching ErrStageNotFound.
func (s *FileStore) Get(ctx context.Context, id string) (*Stage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.read(id)
}

// Update applies fn to the stored record and stores the result; an error from fn leaves the
// record as it was and is returned.
func (s *FileStore) Update(ctx context.Context, id string, fn func(*Stage) error) (*Stage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer s.lock(id)()
	st, err := s.read(id)
	if err != nil {
		return nil, err
	}
	if err := fn(st); err != nil {
		return nil, err
	}
	if st.Spec.ID != id {
		return nil, fmt.Errorf("%w: update of stage %s changed its id to %q", ErrInvalid, id, st.Spec.ID)
	}
	st.Updated = time.Now().UTC()
	if err := s.write(st); err != nil {
		return nil, err
	}
	return st, nil
}

// Delete removes a record; a missing one is not an error.
func (s *FileStore) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.lock(id)()
	if err := os.Remove(s.path(id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete stage %s: %w", id, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("delete stage %s: %w", id, err)
	}
	return nil
}

// List returns every stored record, in no particular order.
func (s *FileStore) List(ctx context.Context) ([]*Stage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list stages: %w", err)
	}
	var out []*Stage
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, tempPrefix) || !strings.HasSuffix(name, recordExt) {
			continue
		}
		st, err := s.readFile(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the directory was read
		}
		if err != nil {
			return nil, fmt.Errorf("list stages: %w", err)
		}
		out = append(out, st)
	}
	return out, nil
}

func (s *FileStore) read(id string) (*Stage, error) {
	st, err := s.readFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stage %s: %w", id, ErrStageNotFound)
	}
	if err != nil {
		return nil, err
	}
	if st.Spec.ID != id {
		return nil, fmt.Errorf("stage %s: its file holds stage %q", id, st.Spec.ID)
	}
	return st, nil
}

func (s *FileStore) readFile(path string) (*Stage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st Stage
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read stage record %s: %w", filepath.Base(path), err)
	}
	return &st, nil
}

// write replaces the record of st atomically and durably.
func (s *FileStore) write(st *Stage) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("store stage %s: %w", st.Spec.ID, err)
	}
	if err := writeFileAtomic(s.path(st.Spec.ID), b); err != nil {
		return fmt.Errorf("store stage %s: %w", st.Spec.ID, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file of mode 0600 next to path, syncs it, renames
// it over path and syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
