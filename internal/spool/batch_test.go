package spool_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/spool"
)

// files lists the spool directory without its lock.
func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		if de.Name() != ".lock" {
			out = append(out, de.Name())
		}
	}
	return out
}

func TestConcurrentPutsSurviveReopenAndRemovalsStick(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	const n = 64
	keys := make([]string, n)
	putErrs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			keys[i], putErrs[i] = s.Put(result(fmt.Sprintf("t-%02d", i)), time.Unix(1700000000, int64(i)).UTC())
		})
	}
	wg.Wait()
	for _, err := range putErrs {
		require.NoError(t, err)
	}
	require.Equal(t, n, s.Len())
	// Deliver the even ones, as a reporter would, then stop without touching the rest.
	for i := 0; i < n; i += 2 {
		require.NoError(t, s.Remove(keys[i]))
	}
	require.Equal(t, n/2, s.Len())
	require.NoError(t, s.Close())

	s2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	items, err := s2.Load()
	require.NoError(t, err)
	var got []string
	for _, it := range items {
		got = append(got, it.Entry.Result.TaskID)
	}
	var want []string
	for i := 1; i < n; i += 2 {
		want = append(want, fmt.Sprintf("t-%02d", i))
	}
	require.Equal(t, want, got, "every stored result that was not removed, oldest first, and nothing else")
	require.Equal(t, n/2, s2.Len())

	for _, it := range items {
		require.NoError(t, s2.Remove(it.Key))
	}
	require.Zero(t, s2.Len())
	require.Empty(t, files(t, dir), "a spool whose results are all delivered leaves no file behind")
	require.NoError(t, s2.Close())
}

// writeBatch writes a batch file the way a group commit does: one {"key","entry"} line per entry.
func writeBatch(t *testing.T, dir, name string, lines ...string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".batch"), []byte(fmt.Sprintln(joinLines(lines))), 0o600))
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return b.String()
}

func entryLine(t *testing.T, key, taskID string) string {
	t.Helper()
	e, err := json.Marshal(spool.Entry{Result: result(taskID), StoredAt: time.Unix(1700000000, 0).UTC()})
	require.NoError(t, err)
	return `{"key":"` + key + `","entry":` + string(e) + `}`
}

func TestBatchFilesLoadWithTheirRemovals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBatch(t, dir, "batch-k1", entryLine(t, "k1", "a"), entryLine(t, "k2", "b"), entryLine(t, "k3", "c"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "batch-k1.done"), []byte("k2\n"), 0o600))
	// The removals of a batch that is gone are dropped.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "batch-k9.done"), []byte("k9\n"), 0o600))

	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 2)
	require.Equal(t, []string{"k1", "k3"}, []string{items[0].Key, items[1].Key})
	require.Equal(t, "a", items[0].Entry.Result.TaskID)
	require.NoFileExists(t, filepath.Join(dir, "batch-k9.done"))

	require.NoError(t, s.Remove("k1"))
	require.FileExists(t, filepath.Join(dir, "batch-k1.batch"), "the batch stays while one of its entries waits")
	require.NoError(t, s.Remove("k3"))
	require.NoError(t, s.Remove("k3"), "removing twice is harmless")
	require.Empty(t, files(t, dir))
}

func TestCorruptBatchEntriesAreSkippedAndAllCorruptBatchesMovedAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeBatch(t, dir, "batch-m1", entryLine(t, "m1", "good"), `{"key":"m2","entry":{"result":`, `{"key":"m3","entry":{}}`)
	writeBatch(t, dir, "batch-x1", `not json`, `{"entry":{}}`)
	var logs bytes.Buffer
	s, err := spool.Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, "good", items[0].Entry.Result.TaskID)
	require.Contains(t, logs.String(), "corrupt spool entry skipped")
	require.FileExists(t, filepath.Join(dir, "corrupt", "batch-x1.batch"))
	names := files(t, dir)
	sort.Strings(names)
	require.Equal(t, []string{"batch-m1.batch", "corrupt"}, names)
}
