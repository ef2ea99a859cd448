package spool_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

// The files below are written by hand the way the earlier one-file-per-entry format wrote them.

func oldEntry(t *testing.T, taskID string) []byte {
	t.Helper()
	e, err := json.Marshal(spool.Entry{Result: result(taskID), StoredAt: time.Unix(1700000000, 0).UTC()})
	require.NoError(t, err)
	return e
}

func writeOld(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
}

// batchLine is a line of a batch file: {"key":K,"entry":E}.
func batchLine(t *testing.T, key, taskID string) string {
	t.Helper()
	return `{"key":"` + key + `","entry":` + string(oldEntry(t, taskID)) + "}\n"
}

// names lists dir without the lock, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		if de.Name() != ".lock" {
			out = append(out, de.Name())
		}
	}
	sort.Strings(out)
	return out
}

func TestOldFormatIsCarriedIntoTheLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeOld(t, dir, "0001-a-00000000.json", oldEntry(t, "a"))
	writeOld(t, dir, "0002-b-00000000.json", oldEntry(t, "b"))
	writeOld(t, dir, "batch-0003-c.batch", []byte(batchLine(t, "0003-c", "c")+batchLine(t, "0004-d", "d")+
		`{"key":"0005-x","entry":{"result":`+"\n"+batchLine(t, "0006-e", "e")))
	writeOld(t, dir, "batch-0003-c.done", []byte("0004-d\n"))
	writeOld(t, dir, "batch-0007-f.batch", []byte(batchLine(t, "0007-f", "f")))
	writeOld(t, dir, "batch-0007-f.done", []byte("0007-f\n"))    // every entry delivered
	writeOld(t, dir, "batch-0009-gone.done", []byte("0009-g\n")) // the removals of a batch that is gone
	writeOld(t, dir, "batch-0010-bad.batch", []byte("not json\n{\"entry\":{}}\n"))
	writeOld(t, dir, "0011-bad.json", []byte(`{"result":`))
	writeOld(t, dir, "0012-empty.json", []byte(`{}`))
	writeOld(t, dir, ".tmp-123", []byte("half"))

	var logs syncbuf.Buffer
	s, err := spool.Open(dir, logger(&logs))
	require.NoError(t, err)
	require.Equal(t, 4, s.Len(), "the live entries are indexed at once")
	items, err := s.Load()
	require.NoError(t, err)
	want := []string{"0001-a-00000000", "0002-b-00000000", "0003-c", "0006-e"}
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	require.Equal(t, want, keys, "old keys are kept, so a delivery in flight still removes its entry")
	require.Equal(t, []string{"a", "b", "c", "e"}, taskIDs(items))
	require.Equal(t, result("c"), items[2].Entry.Result)

	require.Contains(t, logs.String(), "corrupt spool entry moved aside")
	require.Contains(t, logs.String(), "corrupt spool entry skipped")
	require.Contains(t, logs.String(), "carried over from the old spool format")
	got := names(t, dir)
	require.Len(t, got, 2, "only the log and corrupt/ are left: %v", got)
	require.Equal(t, "corrupt", got[0])
	require.True(t, strings.HasPrefix(got[1], "wal-"), got[1])
	require.ElementsMatch(t, []string{"0011-bad.json", "0012-empty.json", "batch-0010-bad.batch"}, names(t, filepath.Join(dir, "corrupt")))
	require.NoError(t, s.Close())

	// The entries are in the log now, durably: the next start finds them without the old files.
	var logs2 syncbuf.Buffer
	s2, err := spool.Open(dir, logger(&logs2))
	require.NoError(t, err)
	items, err = s2.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c", "e"}, taskIDs(items))
	require.NotContains(t, logs2.String(), "old spool format")
	for _, it := range items {
		require.NoError(t, s2.Remove(it.Key))
	}
	require.NoError(t, s2.Close())

	s3, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s3.Close()
	items, err = s3.Load()
	require.NoError(t, err)
	require.Empty(t, items)
}

// A crash after the old entries reached the log but before their files were deleted leaves both:
// the entry is loaded once.
func TestInterruptedMigrationKeepsOneCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeOld(t, dir, "0001-a-00000000.json", oldEntry(t, "a"))
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoFileExists(t, filepath.Join(dir, "0001-a-00000000.json"))

	writeOld(t, dir, "0001-a-00000000.json", oldEntry(t, "a"))
	s2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s2.Close()
	require.Equal(t, 1, s2.Len())
	items, err := s2.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, taskIDs(items))
	require.NoFileExists(t, filepath.Join(dir, "0001-a-00000000.json"))
}

// Load takes up old-format files that appear while the spool is open, and sets a corrupt one aside.
func TestLoadTakesUpOldFilesFoundLater(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs syncbuf.Buffer
	s, err := spool.Open(dir, logger(&logs))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Put(result("new"), time.Unix(1800000000, 0))
	require.NoError(t, err)
	writeOld(t, dir, "0000000000000000001-old-00000000.json", oldEntry(t, "old"))
	writeOld(t, dir, "0000000000000000000-garbage-00000000.json", []byte(`{"result":`))

	items, err := s.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"old", "new"}, taskIDs(items))
	require.Contains(t, logs.String(), "corrupt spool entry moved aside")
	require.FileExists(t, filepath.Join(dir, "corrupt", "0000000000000000000-garbage-00000000.json"))
	require.NoError(t, s.Remove(items[0].Key))
	require.Equal(t, 1, s.Len())
}
