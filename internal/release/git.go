package release

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Source is what git says about the tree a release is built from.
type Source struct {
	// Commit is the hash of HEAD.
	Commit string
	// Time is HEAD's commit time: every archive entry gets it.
	Time time.Time
	// Dirty is set when the tree differs from HEAD: a file changed, or one not ignored and not
	// committed. The binary then is not what the commit builds, and the archives are not
	// reproducible from it.
	Dirty bool
	// Changes is `git status --porcelain`'s list of what differs, empty for a clean tree.
	Changes string
}

// ReadSource asks git about the work tree at dir.
func ReadSource(ctx context.Context, dir string) (Source, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
		}
		return string(out), nil
	}
	head, err := git("log", "-1", "--format=%H %ct")
	if err != nil {
		return Source{}, fmt.Errorf("read the commit to release (a release is built from a git clone): %w", err)
	}
	hash, secs, ok := strings.Cut(strings.TrimSpace(head), " ")
	unix, err := strconv.ParseInt(secs, 10, 64)
	if !ok || err != nil || hash == "" {
		return Source{}, fmt.Errorf("read the commit to release: unexpected git output %q", head)
	}
	changes, err := git("status", "--porcelain")
	if err != nil {
		return Source{}, fmt.Errorf("check the work tree: %w", err)
	}
	return Source{
		Commit:  hash,
		Time:    time.Unix(unix, 0).UTC(),
		Dirty:   changes != "",
		Changes: changes,
	}, nil
}
