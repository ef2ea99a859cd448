package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testTime = time.Date(2026, 11, 29, 12, 34, 56, 789, time.FixedZone("CET", 3600))

// testFiles are given out of order on purpose: the archive must not depend on it.
func testFiles() []File {
	return []File{
		{Name: "dlite", Mode: 0o755, Data: bytes.Repeat([]byte("\x7fELF binary"), 1000)},
		{Name: "README.md", Mode: 0o644, Data: []byte("# dlite\n")},
		{Name: "LICENSE", Mode: 0o644, Data: []byte("Apache License\n")},
		{Name: "CHANGELOG.md", Mode: 0o644, Data: []byte("# Changelog\n")},
	}
}

type entry struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
	data  string
}

func wantEntries(root string) []entry {
	mtime := time.Date(2026, 11, 29, 11, 34, 56, 0, time.UTC)
	return []entry{
		{root + "/", fs.ModeDir | 0o755, mtime, ""},
		{root + "/CHANGELOG.md", 0o644, mtime, "# Changelog\n"},
		{root + "/LICENSE", 0o644, mtime, "Apache License\n"},
		{root + "/README.md", 0o644, mtime, "# dlite\n"},
		{root + "/dlite", 0o755, mtime, string(bytes.Repeat([]byte("\x7fELF binary"), 1000))},
	}
}

func writeTarGz(t *testing.T, files []File, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteTarGz(&buf, "dlite_0.1.0_linux_amd64", files, mtime))
	return buf.Bytes()
}

func writeZip(t *testing.T, files []File, mtime time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteZip(&buf, "dlite_0.1.0_windows_amd64", files, mtime))
	return buf.Bytes()
}

func TestTarGzIsDeterministic(t *testing.T) {
	t.Parallel()
	first := writeTarGz(t, testFiles(), testTime)
	reversed := testFiles()
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	require.Equal(t, first, writeTarGz(t, testFiles(), testTime), "the same input gave other bytes")
	require.Equal(t, first, writeTarGz(t, reversed, testTime.In(time.UTC)), "the order of the files or the time zone changed the bytes")
	require.NotEqual(t, first, writeTarGz(t, testFiles(), testTime.Add(time.Second)), "the time is not recorded")
}

func TestTarGzEntries(t *testing.T) {
	t.Parallel()
	data := writeTarGz(t, testFiles(), testTime)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	require.Empty(t, zr.Name, "the gzip header names a file")
	require.True(t, zr.ModTime.IsZero(), "the gzip header has a time: %v", zr.ModTime)

	var got []entry
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, 0, h.Uid, h.Name)
		require.Equal(t, 0, h.Gid, h.Name)
		require.Equal(t, "root", h.Uname, h.Name)
		require.Equal(t, "root", h.Gname, h.Name)
		require.Equal(t, tar.FormatUSTAR, h.Format, h.Name)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		got = append(got, entry{h.Name, h.FileInfo().Mode(), h.ModTime.UTC(), string(body)})
	}
	require.Equal(t, wantEntries("dlite_0.1.0_linux_amd64"), got)
}

func TestZipIsDeterministic(t *testing.T) {
	t.Parallel()
	first := writeZip(t, testFiles(), testTime)
	reversed := testFiles()
	reversed[0], reversed[3] = reversed[3], reversed[0]
	require.Equal(t, first, writeZip(t, testFiles(), testTime), "the same input gave other bytes")
	require.Equal(t, first, writeZip(t, reversed, testTime.In(time.UTC)), "the order of the files or the time zone changed the bytes")
	require.NotEqual(t, first, writeZip(t, testFiles(), testTime.Add(2*time.Second)), "the time is not recorded")
}

func TestZipEntries(t *testing.T) {
	t.Parallel()
	data := writeZip(t, testFiles(), testTime)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	var got []entry
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		body, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		got = append(got, entry{f.Name, f.Mode(), f.Modified.UTC(), string(body)})
	}
	require.Equal(t, wantEntries("dlite_0.1.0_windows_amd64"), got)
}

func TestArchivesRefuseBadNames(t *testing.T) {
	t.Parallel()
	for name, files := range map[string][]File{
		"a path":         {{Name: "bin/dlite", Mode: 0o755}},
		"a parent":       {{Name: "..", Mode: 0o644}},
		"no name":        {{Name: "", Mode: 0o644}},
		"a twice":        {{Name: "LICENSE", Mode: 0o644}, {Name: "LICENSE", Mode: 0o644}},
		"a setuid bit":   {{Name: "dlite", Mode: fs.ModeSetuid | 0o755}},
		"a special file": {{Name: "dlite", Mode: fs.ModeSymlink | 0o777}},
	} {
		require.Error(t, WriteTarGz(io.Discard, "root", files, testTime), name)
		require.Error(t, WriteZip(io.Discard, "root", files, testTime), name)
	}
	for _, root := range []string{"", "a/b", ".."} {
		require.Error(t, WriteTarGz(io.Discard, root, testFiles(), testTime), root)
		require.Error(t, WriteZip(io.Discard, root, testFiles(), testTime), root)
	}
}

func TestChecksums(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{"b.zip": "second", "a.tar.gz": "first"}
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	got, err := Checksums(dir, []string{"b.zip", "a.tar.gz"})
	require.NoError(t, err)
	require.Equal(t, sum("first")+"  a.tar.gz\n"+sum("second")+"  b.zip\n", string(got))

	_, err = Checksums(dir, []string{"missing.zip"})
	require.ErrorContains(t, err, "missing.zip")
}
