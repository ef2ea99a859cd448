package spool_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	"github.com/dlite-dev/dlite/internal/manager"
	"github.com/dlite-dev/dlite/internal/spool"
)

func result(id string) manager.Result {
	return manager.Result{TaskID: id, TaskType: "SHELL_SCRIPT_TASK", DelegateID: "d-1", Endpoint: manager.EndpointRunner,
		Code: manager.CodeFailed, Error: "exit status 1", Data: json.RawMessage(`{"exitCode":1}`), FinishedAt: time.Unix(1700000000, 0).UTC()}
}

func TestPutLoadRemoveAcrossReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	at := time.Unix(1700000000, 0).UTC()
	k1, err := s.Put(result("t/1"), at)
	require.NoError(t, err)
	_, err = s.Put(result("t-2"), at.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 2, s.Len())
	require.NoError(t, s.Remove(k1))
	require.NoError(t, s.Remove(k1), "removing twice is harmless")
	require.Equal(t, 1, s.Len())
	require.NoError(t, s.Close())

	// Another process (or the same one after a crash) sees what is left.
	s2, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s2.Close()
	items, err := s2.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, result("t-2"), items[0].Entry.Result)
	require.True(t, items[0].Entry.StoredAt.Equal(at.Add(time.Second)))
}

func TestOneRunnerPerSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	_, err = spool.Open(dir, nil)
	require.ErrorIs(t, err, errs.ErrInvalidConfig)
	require.Contains(t, err.Error(), "another runner is using it")
}

func TestCorruptEntriesAreMovedAside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs bytes.Buffer
	s, err := spool.Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Put(result("good"), time.Now())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "0001-bad.json"), []byte(`{"result":`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "0002-empty.json"), []byte(`{}`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte(`half`), 0o600))

	items, err := s.Load()
	require.NoError(t, err)
	require.Len(t, items, 1)
	require.Equal(t, "good", items[0].Entry.Result.TaskID)
	require.FileExists(t, filepath.Join(dir, "corrupt", "0001-bad.json"))
	require.FileExists(t, filepath.Join(dir, "corrupt", "0002-empty.json"))
	require.NoFileExists(t, filepath.Join(dir, ".tmp-123"))
	require.Contains(t, logs.String(), "corrupt spool entry moved aside")
}

func TestEntriesArePrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "spool")
	s, err := spool.Open(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	key, err := s.Put(result("t-1"), time.Now())
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, key+".json"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
}
