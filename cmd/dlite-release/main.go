// Command dlite-release builds dlite's release archives from the git work tree it runs in: the
// dlite binary for every platform of a release, stamped with the version and the commit, each in
// a .tar.gz (a .zip for Windows) with LICENSE, README.md and CHANGELOG.md, and a SHA256SUMS file.
// The same commit gives byte-identical archives. `make release VERSION=vX.Y.Z` runs it:
//
//	dlite-release -version v0.1.0 -dir dist
//
// It refuses a version that is not semantic versioning with the v prefix (v1.2.3, v1.3.0-rc.1) or
// that has no entry in CHANGELOG.md. A tree with uncommitted changes still builds, so that a
// release can be tried before it is committed, but its binaries say "<commit>-dirty" and a
// warning says the archives must not be published.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dlite-dev/dlite/internal/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlite-release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names []string
	for _, t := range release.DefaultTargets {
		names = append(names, t.String())
	}
	version := fs.String("version", "", "the version to release: vMAJOR.MINOR.PATCH[-PRERELEASE], with an entry in CHANGELOG.md (required)")
	dir := fs.String("dir", "dist", "the folder the archives and SHA256SUMS are written to")
	targets := fs.String("targets", strings.Join(names, " "), "the os/arch platforms to build, separated by spaces or commas")
	allowUnlisted := fs.Bool("allow-unlisted", false, "build a pre-release version that has no CHANGELOG.md entry (for CI's test build)")
	goCmd := fs.String("go", "go", "the go command")
	source := fs.String("source", ".", "the root of the dlite module's git work tree")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dlite-release: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *version == "" {
		fmt.Fprintln(stderr, "dlite-release: -version is required, e.g. -version v0.1.0 (make release VERSION=v0.1.0)")
		return 2
	}
	ts, err := release.ParseTargets(*targets)
	if err != nil {
		fmt.Fprintf(stderr, "dlite-release: %v\n", err)
		return 2
	}

	// Refuse a bad version before asking git or the compiler anything.
	changelog, err := os.ReadFile(filepath.Join(*source, "CHANGELOG.md"))
	if err != nil {
		fmt.Fprintf(stderr, "dlite-release: read the changelog: %v\n", err)
		return 1
	}
	if err := release.CheckRelease(*version, changelog, *allowUnlisted); err != nil {
		fmt.Fprintf(stderr, "dlite-release: refusing to release %s: %v\n", *version, err)
		return 1
	}

	src, err := release.ReadSource(ctx, *source)
	if err != nil {
		fmt.Fprintf(stderr, "dlite-release: %v\n", err)
		return 1
	}
	commit := src.Commit
	if src.Dirty {
		commit += "-dirty"
		fmt.Fprintf(stderr, "dlite-release: WARNING: the work tree differs from commit %s:\n%s"+
			"dlite-release: WARNING: the binaries are stamped %s and the archives cannot be rebuilt from any commit: do not publish them\n",
			src.Commit, indent(src.Changes), commit)
	}
	goVersion, err := exec.CommandContext(ctx, *goCmd, "env", "GOVERSION").Output()
	if err != nil {
		fmt.Fprintf(stderr, "dlite-release: run %s env GOVERSION: %v\n", *goCmd, err)
		return 1
	}
	fmt.Fprintf(stdout, "releasing %s from commit %s (%s) with %s\n", *version, commit,
		src.Time.Format("2006-01-02 15:04:05 MST"), strings.TrimSpace(string(goVersion)))

	if _, err := release.Build(ctx, release.Options{
		Version:       *version,
		AllowUnlisted: *allowUnlisted,
		Commit:        commit,
		Time:          src.Time,
		Source:        *source,
		Targets:       ts,
		Dir:           *dir,
		Go:            *goCmd,
		Log:           stdout,
	}); err != nil {
		fmt.Fprintf(stderr, "dlite-release: %v\n", err)
		return 1
	}
	return 0
}

// indent prefixes every line of s, git's list of changes, so that it reads as part of the warning.
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}
