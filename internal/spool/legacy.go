package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dlite-dev/dlite/errs"
)

// The earlier format kept an entry per file, <key>.json, or the entries of a group commit in
// batch-<key>.batch (one {"key","entry"} line each) with the keys removed since appended to
// batch-<key>.done; interrupted writes left .tmp-* files.
const (
	legacyEntryExt  = ".json"
	legacyBatchExt  = ".batch"
	legacyDoneExt   = ".done"
	legacyTmpPrefix = ".tmp-"
)

// legacyEntry is an entry found in a file of the earlier format.
type legacyEntry struct {
	key   string
	entry []byte // compact JSON
}

// migrate carries the live entries of files in the earlier format into the log and, once they
// are durable there, deletes the files. A crash in between leaves entries both in the log and in
// their old files; the next migration finds their keys indexed and only deletes the files. A file
// that cannot be read or decoded is moved to corrupt/ as before.
func (s *Spool) migrate() error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return errs.Wrap(errs.CodeUnknown, "read spool "+s.dir, err)
	}
	var entries []legacyEntry
	var obsolete, batches []string
	dones := map[string]bool{}
	for _, de := range des {
		name := de.Name()
		switch {
		case de.IsDir() || name == lockName:
		case strings.HasPrefix(name, legacyTmpPrefix):
			obsolete = append(obsolete, name)
		case strings.HasSuffix(name, legacyBatchExt):
			batches = append(batches, strings.TrimSuffix(name, legacyBatchExt))
		case strings.HasSuffix(name, legacyDoneExt):
			dones[strings.TrimSuffix(name, legacyDoneExt)] = true
		case strings.HasSuffix(name, legacyEntryExt):
			key := strings.TrimSuffix(name, legacyEntryExt)
			entry, err := readLegacyEntry(filepath.Join(s.dir, name), key)
			if err != nil {
				s.quarantine(name, err)
				continue
			}
			entries = append(entries, legacyEntry{key: key, entry: entry})
			obsolete = append(obsolete, name)
		}
	}
	for _, name := range batches {
		delete(dones, name)
		found, ok := s.readLegacyBatch(name)
		if !ok {
			continue
		}
		entries = append(entries, found...)
		obsolete = append(obsolete, name+legacyBatchExt, name+legacyDoneExt)
	}
	for name := range dones {
		// The removals of a batch that is gone.
		obsolete = append(obsolete, name+legacyDoneExt)
	}
	if len(entries) == 0 && len(obsolete) == 0 {
		return nil
	}
	if err := s.carry(entries); err != nil {
		return errs.Wrap(errs.CodeUnknown, "carry spooled results into the log of "+s.dir, err)
	}
	removed := false
	for _, name := range obsolete {
		err := os.Remove(filepath.Join(s.dir, name))
		switch {
		case err == nil:
			removed = true
		case !errors.Is(err, os.ErrNotExist):
			// Its entries are in the log: the next start tries again, and finds them there.
			s.logger.Warn("could not delete a file of the old spool format", "file", name, "err", err)
		}
	}
	if removed {
		// Otherwise a power loss could bring back files whose entries are delivered and removed
		// from the log by then, and they would be delivered again.
		if err := syncDir(s.dir); err != nil {
			s.logger.Warn("could not sync the spool directory", "dir", s.dir, "err", err)
		}
	}
	return nil
}

// carry stores the entries not in the log yet with one durable commit.
func (s *Spool) carry(entries []legacyEntry) error {
	p := &pending{durable: true}
	seen := map[string]bool{}
	s.mu.Lock()
	for _, e := range entries {
		if _, ok := s.index[e.key]; ok || seen[e.key] {
			continue
		}
		seen[e.key] = true
		off := len(p.data)
		p.data = appendPut(p.data, e.key, e.entry)
		p.puts = append(p.puts, putRef{key: e.key, off: off, n: len(p.data) - off})
	}
	s.mu.Unlock()
	if len(p.puts) == 0 {
		return nil
	}
	if err := s.submit(p); err != nil {
		return err
	}
	s.logger.Info("spooled results carried over from the old spool format", "count", len(p.puts))
	return nil
}

func readLegacyEntry(path, key string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return checkLegacyEntry(key, data)
}

// checkLegacyEntry decodes an entry of the earlier format strictly and returns it compacted, fit
// to go into a record.
func checkLegacyEntry(key string, data []byte) ([]byte, error) {
	if _, err := decodeEntry(data); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, err
	}
	if buf.Len() > maxPayload-len(key)-64 {
		return nil, fmt.Errorf("entry of %d bytes is larger than a record may be", buf.Len())
	}
	return buf.Bytes(), nil
}

// readLegacyBatch returns the entries of a batch file that were not removed. ok is false when the
// batch was moved to corrupt/ because it cannot be read or none of its lines decodes; a corrupt
// line among good ones is logged and skipped.
func (s *Spool) readLegacyBatch(name string) (found []legacyEntry, ok bool) {
	data, err := os.ReadFile(filepath.Join(s.dir, name+legacyBatchExt))
	if err != nil {
		s.quarantine(name+legacyBatchExt, err)
		return nil, false
	}
	removed := map[string]bool{}
	if done, err := os.ReadFile(filepath.Join(s.dir, name+legacyDoneExt)); err == nil {
		for line := range strings.Lines(string(done)) {
			removed[strings.TrimSpace(line)] = true
		}
	}
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
		var entry []byte
		if err == nil {
			if rec.Key == "" {
				err = errors.New("batch line without a key")
			} else {
				entry, err = checkLegacyEntry(rec.Key, rec.Entry)
			}
		}
		if err != nil {
			bad++
			s.logger.Error("corrupt spool entry skipped", "batch", name+legacyBatchExt, "line", total, "cause", err)
			continue
		}
		if !removed[rec.Key] {
			found = append(found, legacyEntry{key: rec.Key, entry: entry})
		}
	}
	if bad == total {
		s.quarantine(name+legacyBatchExt, errors.New("no entry of the batch can be decoded"))
		_ = os.Remove(filepath.Join(s.dir, name+legacyDoneExt))
		return nil, false
	}
	return found, true
}
