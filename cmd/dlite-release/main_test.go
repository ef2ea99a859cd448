package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const changelog = `# Changelog

## [Unreleased]

## [0.1.0] - 2026-11-29

### Added

- The first version.

[unreleased]: https://example.com/compare/v0.1.0...HEAD
[0.1.0]: https://example.com/releases/tag/v0.1.0
`

// module writes a small module shaped like dlite's root: ./cmd/dlite prints its stamped version
// and commit, and the documents every archive holds are there.
func module(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{
		"go.mod":            "module example.com/tiny\n\ngo 1.26\n",
		"cmd/dlite/main.go": "package main\n\nimport \"fmt\"\n\nvar version, commit string\n\nfunc main() { fmt.Printf(\"dlite %s (commit %s)\\n\", version, commit) }\n",
		"CHANGELOG.md":      changelog,
		"LICENSE":           "Apache License\n",
		"README.md":         "# tiny\n",
		".gitignore":        "/dist/\n",
	} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
	}
	return dir
}

func runRelease(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	src := module(t) // not a git clone: every refusal must come before git is asked
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no version", []string{"-source", src}, 2, "-version is required"},
		{"unknown target", []string{"-source", src, "-version", "v0.1.0", "-targets", "linux/386"}, 2, `release target "linux/386"`},
		{"extra argument", []string{"-source", src, "-version", "v0.1.0", "now"}, 2, "unexpected arguments"},
		{"no v", []string{"-source", src, "-version", "0.1.0"}, 1, "refusing to release 0.1.0: invalid release version"},
		{"two numbers", []string{"-source", src, "-version", "v0.1"}, 1, "write out all three numbers, e.g. v0.1.0"},
		{"no changelog entry", []string{"-source", src, "-version", "v0.2.0"}, 1, "refusing to release v0.2.0: version has no entry in CHANGELOG.md"},
		{"test version without the knob", []string{"-source", src, "-version", "v0.0.0-ci.1"}, 1, "version has no entry in CHANGELOG.md"},
		{"final version with the knob", []string{"-source", src, "-version", "v0.2.0", "-allow-unlisted"}, 1, "not a pre-release"},
		{"not a git clone", []string{"-source", src, "-version", "v0.1.0", "-dir", t.TempDir()}, 1, "a release is built from a git clone"},
		{"no changelog", []string{"-source", t.TempDir(), "-version", "v0.1.0"}, 1, "read the changelog"},
	} {
		code, stdout, stderr := runRelease(tt.args...)
		require.Equal(t, tt.code, code, "%s: %s%s", tt.name, stdout, stderr)
		require.Contains(t, stderr, tt.want, tt.name)
	}
}

func TestDirtyTreeIsStampedAndWarned(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	src := module(t)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com",
			"GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com", "GIT_COMMITTER_DATE=2026-11-29T10:00:00Z")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	head := git("rev-parse", "HEAD")

	binaryVersion := func(stdout string) string {
		t.Helper()
		dist := filepath.Join(src, "dist")
		require.Contains(t, stdout, "wrote "+filepath.Join(dist, "SHA256SUMS"))
		return untarFile(t, filepath.Join(dist, "dlite_0.0.0-ci.1_linux_amd64.tar.gz"), "dlite_0.0.0-ci.1_linux_amd64/dlite")
	}
	args := []string{"-source", src, "-dir", filepath.Join(src, "dist"), "-version", "v0.0.0-ci.1", "-allow-unlisted", "-targets", "linux/amd64"}

	code, stdout, stderr := runRelease(args...)
	require.Equal(t, 0, code, stderr)
	require.NotContains(t, stderr, "WARNING", "the ignored dist/ made the tree dirty")
	require.Contains(t, stdout, "releasing v0.0.0-ci.1 from commit "+head+" (2026-11-29 10:00:00 UTC)")
	bin := binaryVersion(stdout)
	require.Contains(t, bin, head)
	require.NotContains(t, bin, head+"-dirty")

	require.NoError(t, os.WriteFile(filepath.Join(src, "README.md"), []byte("# changed\n"), 0o644))
	code, stdout, stderr = runRelease(args...)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "WARNING: the work tree differs from commit "+head)
	require.Contains(t, stderr, "    M README.md")
	require.Contains(t, stderr, "do not publish them")
	require.Contains(t, binaryVersion(stdout), head+"-dirty")
}

func untarFile(t *testing.T, archive, name string) string {
	t.Helper()
	f, err := os.Open(archive)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		require.NotEqual(t, io.EOF, err, "%s is not in %s", name, archive)
		require.NoError(t, err)
		if h.Name == name {
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			return string(data)
		}
	}
}
