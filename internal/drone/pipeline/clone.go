package pipeline

import (
	"strings"

	gen "github.com/dlite-dev/dlite/gen/drone"
)

// CloneStep is the name of the step that clones the build's commit into the workspace before
// the pipeline's own steps, unless the pipeline says `clone: {disable: true}`.
const CloneStep = "clone"

// The variables that hand the clone step the repository's credentials (the stage details'
// netrc), under the names Drone gives them.
const (
	EnvNetrcMachine  = "DRONE_NETRC_MACHINE"
	EnvNetrcUsername = "DRONE_NETRC_USERNAME"
	EnvNetrcPassword = "DRONE_NETRC_PASSWORD"
)

// CloneSpec is what the clone step fetches and checks out.
type CloneSpec struct {
	// Remote is the repository's URL: its git_http_url.
	Remote string
	// Ref is the git ref fetched: the build's, or its target branch when the build has none
	// (HEAD when it has neither).
	Ref string
	// Commit is the commit checked out: the build's; empty when the build has none, and the
	// fetched ref's tip is checked out instead.
	Commit string
	// Branch is the branch Ref names (refs/heads/<branch>), checked out under its name; empty
	// for other refs, which are checked out detached.
	Branch string
	// Tag is the tag Ref names (refs/tags/<tag>), fetched as a tag.
	Tag string
	// Depth limits the fetch to that many commits (clone.depth); 0 fetches the whole history.
	Depth int
}

// newCloneSpec reads what to clone from the build and the pipeline's clone settings.
func newCloneSpec(p *Pipeline, f Facts) *CloneSpec {
	c := &CloneSpec{Remote: f.Repo.GitHttpUrl, Ref: f.Build.Ref, Commit: f.Build.After, Depth: p.Clone.Depth}
	if strings.Trim(c.Commit, "0") == "" {
		// No commit, or git's all-zero one, which names none.
		c.Commit = ""
	}
	if c.Ref == "" {
		c.Ref = "HEAD"
		if f.Build.Target != "" {
			c.Ref = "refs/heads/" + f.Build.Target
		}
	}
	if branch, ok := strings.CutPrefix(c.Ref, "refs/heads/"); ok {
		c.Branch = branch
	}
	if tag, ok := strings.CutPrefix(c.Ref, "refs/tags/"); ok {
		c.Tag = tag
	}
	return c
}

// cloneEnv adds to env what the clone step reads besides the build's facts: the credentials
// (a netrc the step writes where its HOME is), no prompt for others (a clone that needs them
// fails instead of waiting), and with clone.skip_verify no check of the server's certificate.
func cloneEnv(env map[string]string, p *Pipeline, netrc gen.Netrc) {
	if netrc.Machine != "" {
		env[EnvNetrcMachine] = netrc.Machine
		env[EnvNetrcUsername] = netrc.Login
		env[EnvNetrcPassword] = netrc.Password
	}
	env["GIT_TERMINAL_PROMPT"] = "0"
	if p.Clone.SkipVerify {
		env["GIT_SSL_NO_VERIFY"] = "true"
	}
}
