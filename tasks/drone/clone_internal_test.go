package drone

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
)

func TestCloneScriptSays(t *testing.T) {
	t.Parallel()
	branch := cloneScript(&pipeline.CloneSpec{Remote: "https://git.example.com/a/b.git", Ref: "refs/heads/main", Commit: "abc123", Branch: "main", Depth: 50})
	for _, want := range []string{
		"set -e\n",
		`(umask 077 && printf 'machine %s\nlogin %s\npassword %s\n' "$DRONE_NETRC_MACHINE"`,
		`trap 'rm -f "$HOME/.netrc"' EXIT`,
		"  echo '+ git init -q'\n  git 'init' '-q'\n",
		"  git 'remote' 'add' 'origin' 'https://git.example.com/a/b.git'\n",
		"echo '+ git fetch --depth=50 origin refs/heads/main'\ngit 'fetch' '--depth=50' 'origin' 'refs/heads/main'\n",
		"git 'checkout' '-q' '-f' '-B' 'main' 'abc123'\n",
	} {
		require.Contains(t, branch, want)
	}
	require.NotContains(t, branch, "DRONE_NETRC_PASSWORD=", "the password stays in the environment")

	tag := cloneScript(&pipeline.CloneSpec{Remote: "r", Ref: "refs/tags/v1", Tag: "v1"})
	require.Contains(t, tag, "git 'fetch' 'origin' '+refs/tags/v1:refs/tags/v1'\n", "a tag is fetched as a tag, with the whole history")
	require.Contains(t, tag, "git 'checkout' '-q' '-f' 'FETCH_HEAD'\n", "without a commit, the fetched tip")

	odd := cloneScript(&pipeline.CloneSpec{Remote: "https://x/it's $(evil).git", Ref: "refs/pull/1/head", Commit: "f00"})
	require.Contains(t, odd, `git 'remote' 'add' 'origin' 'https://x/it'"'"'s $(evil).git'`, "values are quoted")
	require.Contains(t, odd, "git 'checkout' '-q' '-f' 'f00'\n", "a ref that is no branch is checked out detached")
}

// git runs git in dir with a private HOME and fails the test if it fails.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

// The script run against a real repository: each ref lands on the commit it should, and the
// netrc it wrote is gone once it ends.
func TestCloneScriptClones(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	remote := t.TempDir()
	git(t, remote, "init", "-q", "-b", "main")
	commit := func(name string) string {
		require.NoError(t, os.WriteFile(filepath.Join(remote, name), []byte(name+"\n"), 0o644))
		git(t, remote, "add", name)
		git(t, remote, "commit", "-q", "-m", name)
		return git(t, remote, "rev-parse", "HEAD")
	}
	first := commit("first.txt")
	second := commit("second.txt")
	git(t, remote, "tag", "-a", "v2", "-m", "v2")
	third := commit("third.txt")
	git(t, remote, "checkout", "-q", "-b", "feature", first)
	feature := commit("feature.txt")

	tests := []struct {
		name       string
		spec       pipeline.CloneSpec
		head       string
		branch     string
		commits    int
		hasFile    string
		hasNotFile string
	}{
		{"a branch at the build's commit", pipeline.CloneSpec{Ref: "refs/heads/main", Branch: "main", Commit: second},
			second, "main", 2, "second.txt", "third.txt"},
		{"a branch's tip", pipeline.CloneSpec{Ref: "refs/heads/feature", Branch: "feature"}, feature, "feature", 2, "feature.txt", "second.txt"},
		{"a shallow fetch", pipeline.CloneSpec{Ref: "refs/heads/main", Branch: "main", Commit: third, Depth: 1},
			third, "main", 1, "third.txt", "feature.txt"},
		{"a tag", pipeline.CloneSpec{Ref: "refs/tags/v2", Tag: "v2", Commit: second}, second, "", 2, "second.txt", "third.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws, home := t.TempDir(), filepath.Join(t.TempDir(), "home")
			spec := tt.spec
			spec.Remote = "file://" + remote
			cmd := exec.Command("/bin/sh", "-c", cloneScript(&spec))
			cmd.Dir = ws
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
				"DRONE_NETRC_MACHINE=git.example.com", "DRONE_NETRC_USERNAME=octocat", "DRONE_NETRC_PASSWORD=pw"}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "+ git fetch ")
			require.Equal(t, tt.head, git(t, ws, "rev-parse", "HEAD"))
			branch := git(t, ws, "rev-parse", "--abbrev-ref", "HEAD")
			if tt.branch == "" {
				require.Equal(t, "HEAD", branch, "detached")
			} else {
				require.Equal(t, tt.branch, branch)
			}
			require.Equal(t, tt.commits, len(strings.Fields(git(t, ws, "rev-list", "HEAD"))))
			require.FileExists(t, filepath.Join(ws, tt.hasFile))
			require.NoFileExists(t, filepath.Join(ws, tt.hasNotFile))
			info, err := os.Stat(home)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "HOME is private")
			require.NoFileExists(t, filepath.Join(home, ".netrc"), "the credentials are gone once the clone ends")

			// A second run over the same workspace finds the repository there.
			cmd = exec.Command("/bin/sh", "-c", cloneScript(&spec))
			cmd.Dir, cmd.Env = ws, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1"}
			out, err = cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.NotContains(t, string(out), "+ git init")
			require.Contains(t, string(out), "+ git remote set-url origin ")
		})
	}

	ws := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", cloneScript(&pipeline.CloneSpec{Remote: "file://" + remote, Ref: "refs/heads/main", Branch: "main",
		Commit: "0123456789012345678901234567890123456789"}))
	cmd.Dir, cmd.Env = ws, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "a commit the ref does not hold fails the clone: %s", out)
}
