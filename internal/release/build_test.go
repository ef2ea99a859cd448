package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseTargets(t *testing.T) {
	t.Parallel()
	got, err := ParseTargets("linux/amd64, windows/amd64\tlinux/amd64 darwin/arm64")
	require.NoError(t, err)
	require.Equal(t, []Target{{"linux", "amd64"}, {"windows", "amd64"}, {"darwin", "arm64"}}, got)

	for _, bad := range []string{"", " , ", "linux", "linux/386", "plan9/amd64", "linux-amd64"} {
		_, err := ParseTargets(bad)
		require.Error(t, err, "%q", bad)
	}
	_, err = ParseTargets("linux/386")
	require.ErrorContains(t, err, "want one of linux/amd64, linux/arm64, darwin/amd64, darwin/arm64, windows/amd64")
}

func TestArchiveName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "dlite_0.1.0_linux_amd64.tar.gz", ArchiveName("v0.1.0", Target{"linux", "amd64"}))
	require.Equal(t, "dlite_0.1.0_darwin_arm64.tar.gz", ArchiveName("v0.1.0", Target{"darwin", "arm64"}))
	require.Equal(t, "dlite_1.3.0-rc.1_windows_amd64.zip", ArchiveName("v1.3.0-rc.1", Target{"windows", "amd64"}))
	require.Equal(t, "dlite_1.3.0-rc.1_windows_amd64", ArchiveRoot("v1.3.0-rc.1", Target{"windows", "amd64"}))
}

func TestCheckRelease(t *testing.T) {
	t.Parallel()
	log := []byte(goodChangelog)
	require.NoError(t, CheckRelease("v0.1.0", log, false))
	require.NoError(t, CheckRelease("v1.1.0-rc.1", log, false))
	require.NoError(t, CheckRelease("v0.0.0-ci.1", log, true), "a test pre-release needs no entry")

	err := CheckRelease("v0.2.0", log, false)
	require.ErrorIs(t, err, ErrNotInChangelog)
	require.ErrorContains(t, err, `new section "## [0.2.0] - `)
	err = CheckRelease("v0.2.0", log, true)
	require.ErrorIs(t, err, ErrNotInChangelog, "a final version needs its entry even in a test build")
	require.ErrorContains(t, err, "not a pre-release")
	require.ErrorIs(t, CheckRelease("v0.0.0-ci.1", log, false), ErrNotInChangelog)

	require.ErrorIs(t, CheckRelease("0.1.0", log, false), ErrInvalidVersion)
	require.ErrorIs(t, CheckRelease("v0.1", log, true), ErrInvalidVersion)

	err = CheckRelease("v0.1.0", []byte("# Changelog\n## [0.1.0] - 2026-11-29\n"), false)
	require.ErrorContains(t, err, "CHANGELOG.md is malformed")
}

// tinyModule writes a module whose ./cmd/dlite prints its stamped version and commit as dlite
// does, so that Build can be tested without building the whole runner.
func tinyModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":            "module example.com/tiny\n\ngo 1.26\n",
		"cmd/dlite/main.go": "package main\n\nimport \"fmt\"\n\nvar version, commit string\n\nfunc main() { fmt.Printf(\"dlite %s (commit %s)\\n\", version, commit) }\n",
		"CHANGELOG.md":      goodChangelog,
		"LICENSE":           "Apache License\n",
		"README.md":         "# tiny\n",
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	}
	return dir
}

func TestBuild(t *testing.T) {
	t.Parallel()
	src := tinyModule(t)
	commitTime := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	build := func(dir string) []string {
		t.Helper()
		var log bytes.Buffer
		names, err := Build(context.Background(), Options{
			Version: "v0.1.0",
			Commit:  "0123456789abcdef0123456789abcdef01234567",
			Time:    commitTime,
			Source:  src,
			Targets: []Target{{"windows", "amd64"}, {"linux", "amd64"}},
			Dir:     dir,
			Log:     &log,
		})
		require.NoError(t, err, log.String())
		require.Contains(t, log.String(), "building v0.1.0 linux/amd64")
		return names
	}
	first, second := filepath.Join(t.TempDir(), "dist"), t.TempDir()
	names := build(first)
	require.Equal(t, []string{"dlite_0.1.0_windows_amd64.zip", "dlite_0.1.0_linux_amd64.tar.gz", "SHA256SUMS"}, names)
	require.Equal(t, names, build(second))
	for _, name := range names {
		a, err := os.ReadFile(filepath.Join(first, name))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(second, name))
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "%s differs between two builds of the same source", name)
	}

	sums, err := os.ReadFile(filepath.Join(first, "SHA256SUMS"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n")
	require.Len(t, lines, 2)
	require.True(t, strings.HasSuffix(lines[0], "  dlite_0.1.0_linux_amd64.tar.gz"), lines[0])
	require.True(t, strings.HasSuffix(lines[1], "  dlite_0.1.0_windows_amd64.zip"), lines[1])
	if _, err := exec.LookPath("sha256sum"); err == nil {
		check := exec.Command("sha256sum", "-c", "SHA256SUMS")
		check.Dir = first
		out, err := check.CombinedOutput()
		require.NoError(t, err, string(out))
	}

	linux := untar(t, filepath.Join(first, "dlite_0.1.0_linux_amd64.tar.gz"))
	require.Equal(t, []string{
		"dlite_0.1.0_linux_amd64/",
		"dlite_0.1.0_linux_amd64/CHANGELOG.md",
		"dlite_0.1.0_linux_amd64/LICENSE",
		"dlite_0.1.0_linux_amd64/README.md",
		"dlite_0.1.0_linux_amd64/dlite",
	}, linux.names)
	require.Equal(t, "Apache License\n", linux.data["dlite_0.1.0_linux_amd64/LICENSE"])
	require.Equal(t, int64(0o755), linux.modes["dlite_0.1.0_linux_amd64/dlite"])
	for name, mtime := range linux.mtimes {
		require.True(t, mtime.Equal(commitTime), "%s has time %v", name, mtime)
	}
	bin := linux.data["dlite_0.1.0_linux_amd64/dlite"]
	require.Contains(t, bin, "\x7fELF")
	require.NotContains(t, bin, src, "the binary holds the source's path: built without -trimpath")
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		path := filepath.Join(t.TempDir(), "dlite")
		require.NoError(t, os.WriteFile(path, []byte(bin), 0o755))
		out, err := exec.Command(path).Output()
		require.NoError(t, err)
		require.Equal(t, "dlite v0.1.0 (commit 0123456789abcdef0123456789abcdef01234567)\n", string(out))
	}

	data, err := os.ReadFile(filepath.Join(first, "dlite_0.1.0_windows_amd64.zip"))
	require.NoError(t, err)
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	var zipNames []string
	for _, f := range zr.File {
		zipNames = append(zipNames, f.Name)
	}
	require.Equal(t, []string{
		"dlite_0.1.0_windows_amd64/",
		"dlite_0.1.0_windows_amd64/CHANGELOG.md",
		"dlite_0.1.0_windows_amd64/LICENSE",
		"dlite_0.1.0_windows_amd64/README.md",
		"dlite_0.1.0_windows_amd64/dlite.exe",
	}, zipNames)
}

func TestBuildRefusesBeforeBuilding(t *testing.T) {
	t.Parallel()
	src := tinyModule(t)
	for _, tt := range []struct {
		version string
		allow   bool
		want    error
	}{
		{"0.1.0", false, ErrInvalidVersion},
		{"v0.1", true, ErrInvalidVersion},
		{"v0.2.0", false, ErrNotInChangelog},
		{"v0.2.0", true, ErrNotInChangelog},
		{"v0.0.0-ci.1", false, ErrNotInChangelog},
	} {
		dir := filepath.Join(t.TempDir(), "dist")
		_, err := Build(context.Background(), Options{
			Version: tt.version, AllowUnlisted: tt.allow, Commit: "abc", Time: time.Now(),
			Source: src, Dir: dir,
			Go: "/nonexistent/go", // a refused version must never get as far as building
		})
		require.ErrorIs(t, err, tt.want, tt.version)
		_, statErr := os.Stat(dir)
		require.True(t, os.IsNotExist(statErr), "%s: the release folder was created", tt.version)
	}
}

func TestBuildEnvFixesWhatChangesTheBinary(t *testing.T) {
	t.Parallel()
	env := buildEnv([]string{"HOME=/root", "GOAMD64=v3", "GOFLAGS=-race", "CGO_ENABLED=1", "GOOS=plan9"}, Target{"linux", "arm64"})
	require.Equal(t, []string{
		"HOME=/root", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64", "GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly",
	}, env)
}

func TestReadSource(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com",
			"GIT_AUTHOR_DATE=2026-11-01T09:00:00Z", "GIT_COMMITTER_DATE=2026-11-29T10:11:12Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("/dist/\n"), 0o644))
	git("add", ".")
	git("commit", "-q", "-m", "first")
	head := git("rev-parse", "HEAD")

	src, err := ReadSource(context.Background(), dir)
	require.NoError(t, err)
	require.Equal(t, Source{Commit: head, Time: time.Date(2026, 11, 29, 10, 11, 12, 0, time.UTC)}, src,
		"the commit time, not the author time, is the archives' time")

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dist"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dist", "x.tar.gz"), nil, 0o644))
	src, err = ReadSource(context.Background(), dir)
	require.NoError(t, err)
	require.False(t, src.Dirty, "an ignored file made the tree dirty: %s", src.Changes)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "new.go"), nil, 0o644))
	src, err = ReadSource(context.Background(), dir)
	require.NoError(t, err)
	require.True(t, src.Dirty, "an untracked file can change the build")
	require.Contains(t, src.Changes, "new.go")

	require.NoError(t, os.Remove(filepath.Join(dir, "new.go")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("changed\n"), 0o644))
	src, err = ReadSource(context.Background(), dir)
	require.NoError(t, err)
	require.True(t, src.Dirty)
	require.Contains(t, src.Changes, "a.txt")

	_, err = ReadSource(context.Background(), t.TempDir())
	require.ErrorContains(t, err, "a release is built from a git clone")
}

type tarContents struct {
	names  []string
	data   map[string]string
	modes  map[string]int64
	mtimes map[string]time.Time
}

func untar(t *testing.T, path string) tarContents {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	c := tarContents{data: map[string]string{}, modes: map[string]int64{}, mtimes: map[string]time.Time{}}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return c
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		c.names = append(c.names, h.Name)
		c.data[h.Name] = string(body)
		c.modes[h.Name] = h.Mode
		c.mtimes[h.Name] = h.ModTime
	}
}
