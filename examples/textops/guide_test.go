package main

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGuideOnACopy follows README.md's "Write your own task type" on a copy of this example: it
// takes the spec, method and test from the README itself, so the guide cannot drift from what
// works. It runs the same commands the guide gives.
func TestGuideOnACopy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a copy of the example module")
	}
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	blocks := guideBlocks(t, filepath.Join(repo, "README.md"))
	require.Equal(t, "go generate ./...\ngo build ./...", blocks["generate"])
	require.Equal(t, "go test ./...", blocks["test-run"])
	require.Contains(t, blocks["copy"], "cp -r examples/textops ~/myrunner && cd ~/myrunner")
	require.Contains(t, blocks["copy"], "go mod edit -replace github.com/dlite-dev/dlite=/path/to/your/dlite/checkout")

	// cp -r examples/textops ~/myrunner, then point the replace at this checkout.
	dir := filepath.Join(t.TempDir(), "myrunner")
	copyTree(t, ".", dir)
	goCmd(t, dir, "mod", "edit", "-replace", "github.com/dlite-dev/dlite="+repo)

	// 1. Add the task type under paths:.
	spec := filepath.Join(dir, "openapi", "tasks.yaml")
	b, err := os.ReadFile(spec)
	require.NoError(t, err)
	edited := strings.Replace(string(b), "\npaths:\n", "\npaths:\n"+blocks["spec"]+"\n", 1)
	require.NotEqual(t, string(b), edited)
	require.NoError(t, os.WriteFile(spec, []byte(edited), 0o644))

	// 2. Regenerate; the build names the method to write.
	goCmd(t, dir, "generate", "./...")
	out, err := goCmdErr(dir, "build", "./...")
	require.Error(t, err, "the build must fail until CountTask is implemented")
	require.Contains(t, out, blocks["error"], "the build error README.md quotes")

	// 3. Implement it.
	handlers := filepath.Join(dir, "handlers", "handlers.go")
	b, err = os.ReadFile(handlers)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(handlers, append(b, []byte("\n"+blocks["method"]+"\n")...), 0o644))
	goCmd(t, dir, "build", "./...")

	// 4. Test it against the mock manager, with the rest of the example's tests.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "count_test.go"), []byte(blocks["test"]+"\n"), 0o644))
	out = goCmd(t, dir, "test", "-count=1", "-run", "TestCountTask|TestRunnerAgainstTheMockManager|TestHashTask|TestRenderTask", "./...")
	require.Contains(t, out, "ok  \texample.com/textops")
}

// guideBlocks returns the fenced code blocks of the README that follow a `<!-- guide:NAME -->` line.
func guideBlocks(t *testing.T, readme string) map[string]string {
	t.Helper()
	f, err := os.Open(readme)
	require.NoError(t, err)
	defer f.Close()
	blocks := map[string]string{}
	var name string
	var lines []string
	inside := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- guide:") && strings.HasSuffix(line, " -->"):
			name = strings.TrimSuffix(strings.TrimPrefix(line, "<!-- guide:"), " -->")
		case name != "" && !inside && strings.HasPrefix(line, "```"):
			inside, lines = true, nil
		case inside && line == "```":
			blocks[name] = strings.Join(lines, "\n")
			inside, name = false, ""
		case inside:
			lines = append(lines, line)
		}
	}
	require.NoError(t, sc.Err())
	for _, want := range []string{"copy", "spec", "generate", "error", "method", "test", "test-run"} {
		require.Contains(t, blocks, want, "README.md lost its guide:%s block", want)
	}
	return blocks
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	}))
}

func goCmdErr(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := goCmdErr(dir, args...)
	require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
	return out
}
