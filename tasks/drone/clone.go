package drone

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dlite-dev/dlite/internal/drone/pipeline"
	"github.com/dlite-dev/dlite/internal/engine"
)

// DefaultCloneImage is the image the clone step of a docker pipeline runs in unless the runner
// names another (DRONE_RUNNER_CLONE_IMAGE): Drone's own, which has git and a POSIX shell.
const DefaultCloneImage = "drone/git:latest"

// cloneHome is the clone step's HOME, where git finds the netrc the step writes and its own
// configuration, never the runner user's. On the host it lies in the stage's shared directory
// (inside the stage's private directory, removed at cleanup); in a container it lies in the
// container's own file system, which no other step sees.
const (
	cloneHomeDir       = "clone-home"
	cloneHomeContainer = "/tmp/dlite-clone-home"
)

// cloneStepSpec turns spec, the engine step of the clone step, into the clone: the clone script
// run by /bin/sh, on the host for exec pipelines and in the clone image (pulled when missing,
// its entrypoint replaced) for docker ones, with HOME a directory of its own.
func (r *stageRun) cloneStepSpec(spec engine.StepSpec, c *pipeline.CloneSpec) engine.StepSpec {
	spec.Entrypoint, spec.Commands = []string{"/bin/sh", "-c"}, []string{cloneScript(c)}
	if r.plan.Pipeline.Type == pipeline.TypeDocker {
		spec.Image, spec.Pull = r.h.opts.CloneImage, engine.PullIfNotPresent
		spec.Env["HOME"] = cloneHomeContainer
		return spec
	}
	spec.Env["HOME"] = filepath.Join(r.shared, cloneHomeDir)
	return spec
}

// cloneScript is the clone step's POSIX sh script. It writes the netrc (DRONE_NETRC_*) into a
// private HOME and removes it when it ends, then, in the working directory (the workspace):
// makes a repository there unless one is there already, points its origin at the remote,
// fetches the ref (a tag as a tag; only the last Depth commits when Depth is set) and checks out
// the commit (the fetched tip when there is none), a branch under its own name. It shows each
// git command before it runs it; the first that fails ends it. Every value of c is quoted, and
// the credentials stay in the environment, out of the script.
func cloneScript(c *pipeline.CloneSpec) string {
	var b strings.Builder
	b.WriteString(`set -e
mkdir -p "$HOME"
chmod 700 "$HOME"
if [ -n "${DRONE_NETRC_MACHINE:-}" ]; then
  trap 'rm -f "$HOME/.netrc"' EXIT
  (umask 077 && printf 'machine %s\nlogin %s\npassword %s\n' "$DRONE_NETRC_MACHINE" "${DRONE_NETRC_USERNAME:-}" "${DRONE_NETRC_PASSWORD:-}" > "$HOME/.netrc")
fi
if ! command -v git >/dev/null 2>&1; then
  echo "git is not installed where the clone step runs; it needs git on its PATH" >&2
  exit 127
fi
# A workspace owned by another user than the step's (a container's root over the runner's
# directory) is refused by git unless it is marked safe; HOME is the step's own.
git config --global --add safe.directory "$PWD"
if [ ! -d .git ]; then
`)
	gitLine(&b, "  ", "init", "-q")
	b.WriteString("fi\nif git remote get-url origin >/dev/null 2>&1; then\n")
	gitLine(&b, "  ", "remote", "set-url", "origin", c.Remote)
	b.WriteString("else\n")
	gitLine(&b, "  ", "remote", "add", "origin", c.Remote)
	b.WriteString("fi\n")

	fetch := []string{"fetch"}
	if c.Depth > 0 {
		fetch = append(fetch, "--depth="+strconv.Itoa(c.Depth))
	}
	refspec := c.Ref
	if c.Tag != "" {
		refspec = "+" + c.Ref + ":" + c.Ref
	}
	gitLine(&b, "", append(fetch, "origin", refspec)...)

	commit := c.Commit
	if commit == "" {
		commit = "FETCH_HEAD"
	}
	if c.Branch != "" {
		gitLine(&b, "", "checkout", "-q", "-f", "-B", c.Branch, commit)
	} else {
		gitLine(&b, "", "checkout", "-q", "-f", commit)
	}
	return b.String()
}

// gitLine appends a git command to the script: first shown as "+ git ...", then run.
func gitLine(b *strings.Builder, indent string, args ...string) {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	fmt.Fprintf(b, "%secho %s\n%sgit %s\n", indent, shellQuote("+ git "+strings.Join(args, " ")), indent, strings.Join(quoted, " "))
}

// hostHasGit reports whether git is on the PATH a host step with the environment env runs with:
// its own PATH, else the runner's.
func hostHasGit(env map[string]string) bool {
	path := env["PATH"]
	if path == "" {
		path = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if info, err := os.Stat(filepath.Join(dir, "git")); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}
