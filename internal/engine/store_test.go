package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/engine"
)

func TestFileStoreRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "records")
	s, err := engine.NewFileStore(dir)
	require.NoError(t, err)

	_, err = s.Get(ctx, "nope")
	require.ErrorIs(t, err, engine.ErrStageNotFound)
	_, err = s.Update(ctx, "nope", func(*engine.Stage) error { return nil })
	require.ErrorIs(t, err, engine.ErrStageNotFound)

	id := "../../etc/passwd stage/1"
	st := &engine.Stage{Spec: engine.StageSpec{ID: id, Secrets: []string{"hunter2"}}, State: engine.StageInitializing}
	require.NoError(t, s.Create(ctx, st))
	require.False(t, st.Created.IsZero())
	require.ErrorIs(t, s.Create(ctx, st), engine.ErrStageExists)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, engine.StageKey(id)+".json", entries[0].Name(), "the file is named by the id's hash")
	info, err := os.Stat(filepath.Join(dir, entries[0].Name()))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	info, err = os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())

	got, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, engine.StageInitializing, got.State)
	require.Equal(t, []string{"hunter2"}, got.Spec.Secrets)

	boom := errors.New("boom")
	_, err = s.Update(ctx, id, func(st *engine.Stage) error { st.State = engine.StageReady; return boom })
	require.ErrorIs(t, err, boom)
	got, err = s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, engine.StageInitializing, got.State, "a failed update changes nothing")

	up, err := s.Update(ctx, id, func(st *engine.Stage) error { st.State = engine.StageReady; return nil })
	require.NoError(t, err)
	require.Equal(t, engine.StageReady, up.State)
	_, err = s.Update(ctx, id, func(st *engine.Stage) error { st.Spec.ID = "other"; return nil })
	require.ErrorIs(t, err, engine.ErrInvalid)

	require.NoError(t, s.Create(ctx, &engine.Stage{Spec: engine.StageSpec{ID: "second"}}))
	all, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)

	require.NoError(t, s.Delete(ctx, id))
	require.NoError(t, s.Delete(ctx, id), "deleting a missing record is fine")
	_, err = s.Get(ctx, id)
	require.ErrorIs(t, err, engine.ErrStageNotFound)
	all, err = s.List(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
}

func TestFileStoreSerialisesUpdates(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := engine.NewFileStore(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.Create(ctx, &engine.Stage{Spec: engine.StageSpec{ID: "s"}}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := s.Update(ctx, "s", func(st *engine.Stage) error {
				if st.Exports == nil {
					st.Exports = map[string]string{}
				}
				n, _ := strconv.Atoi(st.Exports["N"])
				st.Exports["N"] = strconv.Itoa(n + 1)
				return nil
			})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	st, err := s.Get(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, "20", st.Exports["N"], "no update was lost")
}

func TestFileStoreRemovesLeftoverTempFilesAndTightensItsDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	leftover := filepath.Join(dir, ".tmp-123")
	require.NoError(t, os.WriteFile(leftover, []byte("{half"), 0o600))
	s, err := engine.NewFileStore(dir)
	require.NoError(t, err)
	require.NoFileExists(t, leftover)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	all, err := s.List(t.Context())
	require.NoError(t, err)
	require.Empty(t, all)
}
