package spool_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/spool"
	"github.com/dlite-dev/dlite/internal/syncbuf"
)

func result(id string) manager.Result {
	return manager.Result{TaskID: id, TaskType: "SHELL_SCRIPT_TASK", DelegateID: "d-1", Endpoint: manager.EndpointRunner,
		Code: manager.CodeFailed, Error: "exit status 1", Data: json.RawMessage(`{"exitCode":1}`), FinishedAt: time.Unix(1700000000, 0).UTC()}
}

func logger(w *syncbuf.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// segments lists the log segments in dir.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "wal-*.log"))
	require.NoError(t, err)
	return matches
}

func taskIDs(items []spool.Item) []string {
	var ids []string
	for _, it := range items {
		ids = append(ids, it.Entry.Result.TaskID)
	}
	return ids
}

func TestPutLoadRemoveAcrossReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	at := time.Unix(1700000000, 0).UTC()
	k1, err := s.Put(result("t/1"), at)
	require.NoError(t, err)
	k2, err := s.Put(result("t-2"), at.Add(time.Second))
	require.NoError(t, err)
	require.Less(t, k1, k2, "keys sort in the order results were stored")
	require.True(t, strings.HasPrefix(k1, fmt.Sprintf("%019d-t_1-", at.UnixNano())), k1)
	require.Equal(t, 2, s.Len())
	require.NoError(t, s.Remove(k1))
	require.NoError(t, s.Remove(k1), "removing twice is harmless")
	require.NoError(t, s.Remove("no-such-key"))
	require.Equal(t, 1, s.Len())
	require.NoError(t, s.Close())

	// Another process (or the same one after a crash) sees what is left.
	s2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	require.Equal(t, 1, s2.Len())
	items, err := s2.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, k2, items[0].Key)
	require.Equal(t, result("t-2"), items[0].Entry.Result)
	require.True(t, items[0].Entry.StoredAt.Equal(at.Add(time.Second)))

	// A result stored now sits next to the one kept from before.
	k3, err := s2.Put(result("t-3"), at.Add(2*time.Second))
	require.NoError(t, err)
	items, err = s2.Load()
	require.NoError(t, err)
	require.Equal(t, []string{k2, k3}, []string{items[0].Key, items[1].Key})
	require.NoError(t, s2.Remove(k2))
	require.NoError(t, s2.Close())

	s3, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s3.Close()
	items, err = s3.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"t-3"}, taskIDs(items))
}

func TestConcurrentPutsAndRemovesLeaveExactlyTheLiveOnes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	const workers, each = 32, 40
	var (
		mu   sync.Mutex
		live []string
	)
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			var mine []string
			for i := range each {
				id := fmt.Sprintf("t-%02d-%02d", w, i)
				key, err := s.Put(result(id), time.Unix(1700000000, int64(w*each+i)).UTC())
				if err != nil {
					errc <- err
					return
				}
				mine = append(mine, key)
				// Deliver two results in three, some at once and some a little later, as the
				// reporter's deliveries finish in any order.
				if i%3 == 1 {
					continue
				}
				k := mine[len(mine)-1]
				if i%3 == 2 && len(mine) > 1 {
					k = mine[len(mine)-2]
				}
				if err := s.Remove(k); err != nil {
					errc <- err
					return
				}
				mine = slices.DeleteFunc(mine, func(x string) bool { return x == k })
			}
			mu.Lock()
			live = append(live, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	require.Equal(t, len(live), s.Len())
	require.NoError(t, s.Close())

	s2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s2.Close()
	items, err := s2.Load()
	require.NoError(t, err)
	var got []string
	for _, it := range items {
		got = append(got, it.Key)
	}
	slices.Sort(live)
	require.Equal(t, live, got, "every stored result that was not removed, oldest first, and nothing else")
	require.Equal(t, len(live), s2.Len())
}

func TestOneRunnerPerSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	_, err = spool.Open(dir, nil)
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.Contains(t, err.Error(), "another runner is using it")
	require.Contains(t, err.Error(), "DLITE_SPOOL_DIR")
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing twice is harmless")

	s2, err := spool.Open(dir, nil)
	require.NoError(t, err, "closing releases the lock")
	require.NoError(t, s2.Close())
}

func TestUseAfterCloseFails(t *testing.T) {
	t.Parallel()
	s, err := spool.Open(t.TempDir(), nil)
	require.NoError(t, err)
	key, err := s.Put(result("t-1"), time.Now())
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Put(result("t-2"), time.Now())
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorIs(t, s.Remove(key), os.ErrClosed)
	_, err = s.Load()
	require.ErrorIs(t, err, os.ErrClosed)
}

func TestFilesArePrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "spool")
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Put(result("t-1"), time.Now())
	require.NoError(t, err)
	segs := segments(t, dir)
	require.Len(t, segs, 1)
	for _, name := range append(segs, filepath.Join(dir, ".lock")) {
		fi, err := os.Stat(name)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}
	di, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
}

func TestRemovalNeedsNoNewFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	var keys []string
	for i := range 20 {
		k, err := s.Put(result(fmt.Sprint("t-", i)), time.Now())
		require.NoError(t, err)
		keys = append(keys, k)
	}
	before := segments(t, dir)
	for _, k := range keys {
		require.NoError(t, s.Remove(k))
	}
	require.Zero(t, s.Len())
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, des, 2, "the lock and one log segment, whatever was stored and removed")
	require.Equal(t, before, segments(t, dir))
}

// A task's update carries no code and comes back from the log as it went in; an outcome without
// a code is no entry this spool wrote.
func TestUpdatesAreKeptWithoutACode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	at := time.Unix(1700000000, 0).UTC()
	update := manager.Result{TaskID: "t-1", TaskType: "DRONE_STAGE", DelegateID: "d-1", Endpoint: manager.EndpointRunner,
		Update: 2, Data: json.RawMessage(`{"step":1}`), FinishedAt: at}
	_, err = s.Put(update, at)
	require.NoError(t, err)
	_, err = s.Put(manager.Result{TaskID: "t-2", TaskType: "DRONE_STAGE", FinishedAt: at}, at.Add(time.Second))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	var logs syncbuf.Buffer
	s, err = spool.Open(dir, logger(&logs))
	require.NoError(t, err)
	defer s.Close()
	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, update, items[0].Entry.Result)
	require.Contains(t, logs.String(), "outcome entry lacks a code")
}
