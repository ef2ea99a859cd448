package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Target is a platform a release is built for.
type Target struct {
	OS   string // GOOS
	Arch string // GOARCH
}

// String returns the target as "os/arch".
func (t Target) String() string { return t.OS + "/" + t.Arch }

// DefaultTargets are the platforms of a release.
var DefaultTargets = []Target{
	{"linux", "amd64"},
	{"linux", "arm64"},
	{"darwin", "amd64"},
	{"darwin", "arm64"},
	{"windows", "amd64"},
}

// ParseTargets reads targets written "os/arch", separated by spaces or commas:
// "linux/amd64 windows/amd64". Each must be one of DefaultTargets, whose builds are the ones
// tested; a target given twice is built once.
func ParseTargets(s string) ([]Target, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	if len(fields) == 0 {
		return nil, errors.New("no release target: want os/arch, e.g. linux/amd64")
	}
	var targets []Target
	seen := map[Target]bool{}
	for _, f := range fields {
		goos, goarch, ok := strings.Cut(f, "/")
		t := Target{goos, goarch}
		known := false
		for _, d := range DefaultTargets {
			known = known || d == t
		}
		if !ok || !known {
			names := make([]string, len(DefaultTargets))
			for i, d := range DefaultTargets {
				names[i] = d.String()
			}
			return nil, fmt.Errorf("release target %q: want one of %s", f, strings.Join(names, ", "))
		}
		if !seen[t] {
			seen[t] = true
			targets = append(targets, t)
		}
	}
	return targets, nil
}

// ArchiveRoot returns the name of the folder an archive of version v ("v0.1.0") for t unpacks
// to: "dlite_0.1.0_linux_amd64". The version is written without its v, as release archives of
// Go tools usually are.
func ArchiveRoot(v string, t Target) string {
	return fmt.Sprintf("dlite_%s_%s_%s", strings.TrimPrefix(v, "v"), t.OS, t.Arch)
}

// ArchiveName returns the file name of the archive of version v for t: a .zip for Windows, a
// .tar.gz for the others.
func ArchiveName(v string, t Target) string {
	if t.OS == "windows" {
		return ArchiveRoot(v, t) + ".zip"
	}
	return ArchiveRoot(v, t) + ".tar.gz"
}

// Options say what Build builds.
type Options struct {
	// Version is the release version, "v0.1.0"; see CheckVersion.
	Version string
	// AllowUnlisted lets a pre-release version without a changelog entry through (CI builds one
	// to check that releasing works). A version without a pre-release part always needs its entry.
	AllowUnlisted bool
	// Commit is stamped into the binary next to the version (`dlite version` prints both).
	Commit string
	// Time is every archive entry's modification time: the commit's time, so that the same
	// commit gives the same bytes.
	Time time.Time
	// Source is the module's root folder: it holds CHANGELOG.md, LICENSE and README.md.
	Source string
	// Package is the main package to build, relative to Source; "./cmd/dlite" when empty.
	Package string
	// Targets are the platforms to build for; DefaultTargets when empty.
	Targets []Target
	// Dir is the folder the archives and SHA256SUMS are written to; it is created when missing.
	Dir string
	// Go is the go command; "go" when empty.
	Go string
	// Log receives one line per step; nil discards them.
	Log io.Writer
}

// Docs are the files of the module's root that every archive holds beside the binary.
var Docs = []string{"CHANGELOG.md", "LICENSE", "README.md"}

// CheckRelease refuses a version that cannot be released: not valid (CheckVersion), or without
// an entry in changelog unless allowUnlisted is set and the version is a pre-release. It also
// refuses a changelog that does not parse.
func CheckRelease(v string, changelog []byte, allowUnlisted bool) error {
	if err := CheckVersion(v); err != nil {
		return err
	}
	log, err := ParseChangelog(changelog)
	if err != nil {
		return fmt.Errorf("CHANGELOG.md is malformed:\n%w", err)
	}
	if _, ok := log.Entry(v); ok {
		return nil
	}
	if allowUnlisted && IsPrerelease(v) {
		return nil
	}
	heading := fmt.Sprintf("## [%s] - %s", strings.TrimPrefix(v, "v"), time.Now().UTC().Format(time.DateOnly))
	if allowUnlisted {
		return fmt.Errorf("%w: %s is not a pre-release, so it needs its entry even in a test build; add %q", ErrNotInChangelog, v, heading)
	}
	return fmt.Errorf("%w: %s; move the changes under [Unreleased] to a new section %q (and add its link at the bottom)", ErrNotInChangelog, v, heading)
}

// Build checks the release (CheckRelease), then builds the binary for every target, archives it
// with Docs, and writes the archives and their SHA256SUMS to o.Dir. It returns the names of the
// files written, the checksum file last. The binaries are static (CGO_ENABLED=0), built with
// -trimpath, without VCS stamping and with an empty build id, and the archives hold nothing that
// depends on the machine or the moment: the same source and Go toolchain give the same bytes.
func Build(ctx context.Context, o Options) ([]string, error) {
	if o.Package == "" {
		o.Package = "./cmd/dlite"
	}
	if len(o.Targets) == 0 {
		o.Targets = DefaultTargets
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Commit == "" || strings.ContainsAny(o.Commit, " \t'\"") {
		return nil, fmt.Errorf("release commit %q: want the commit's hash", o.Commit)
	}
	if o.Time.IsZero() {
		return nil, errors.New("release time: want the commit's time")
	}
	changelog, err := os.ReadFile(filepath.Join(o.Source, "CHANGELOG.md"))
	if err != nil {
		return nil, fmt.Errorf("read the changelog: %w", err)
	}
	if err := CheckRelease(o.Version, changelog, o.AllowUnlisted); err != nil {
		return nil, err
	}
	var docs []File
	for _, name := range Docs {
		data, err := os.ReadFile(filepath.Join(o.Source, name))
		if err != nil {
			return nil, fmt.Errorf("read what the archives hold: %w", err)
		}
		docs = append(docs, File{Name: name, Mode: 0o644, Data: data})
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("release folder: %w", err)
	}
	work, err := os.MkdirTemp("", "dlite-release-")
	if err != nil {
		return nil, fmt.Errorf("release work folder: %w", err)
	}
	defer os.RemoveAll(work)

	var written []string
	for _, t := range o.Targets {
		name, err := buildTarget(ctx, o, t, docs, work)
		if err != nil {
			return nil, err
		}
		written = append(written, name)
	}
	sums, err := Checksums(o.Dir, written)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(o.Dir, ChecksumsName), sums); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "wrote %s\n", filepath.Join(o.Dir, ChecksumsName))
	return append(written, ChecksumsName), nil
}

// buildTarget builds and archives the binary for t, and returns the archive's name.
func buildTarget(ctx context.Context, o Options, t Target, docs []File, work string) (string, error) {
	binName := "dlite"
	if t.OS == "windows" {
		binName += ".exe"
	}
	bin := filepath.Join(work, t.OS+"_"+t.Arch, binName)
	fmt.Fprintf(o.Log, "building %s %s\n", o.Version, t)
	ldflags := fmt.Sprintf("-s -w -buildid= -X main.version=%s -X main.commit=%s", o.Version, o.Commit)
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, o.Package)
	cmd.Dir = o.Source
	cmd.Env = buildEnv(os.Environ(), t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s for %s: %w\n%s", o.Package, t, err, out.Bytes())
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("read the %s binary: %w", t, err)
	}
	files := append([]File{{Name: binName, Mode: 0o755, Data: data}}, docs...)
	var archive bytes.Buffer
	if t.OS == "windows" {
		err = WriteZip(&archive, ArchiveRoot(o.Version, t), files, o.Time)
	} else {
		err = WriteTarGz(&archive, ArchiveRoot(o.Version, t), files, o.Time)
	}
	if err != nil {
		return "", err
	}
	name := ArchiveName(o.Version, t)
	if err := writeFile(filepath.Join(o.Dir, name), archive.Bytes()); err != nil {
		return "", err
	}
	fmt.Fprintf(o.Log, "wrote %s\n", filepath.Join(o.Dir, name))
	return name, nil
}

// buildEnv is the environment of a release build: the caller's, with every setting that changes
// the binary fixed, so that a developer's own Go settings cannot make a release differ.
func buildEnv(env []string, t Target) []string {
	fixed := map[string]string{
		"CGO_ENABLED": "0",
		"GOOS":        t.OS,
		"GOARCH":      t.Arch,
		"GOAMD64":     "v1",
		"GOARM64":     "v8.0",
		// Non-empty so that a GOFLAGS set with `go env -w` does not apply either.
		"GOFLAGS": "-mod=readonly",
	}
	out := make([]string, 0, len(env)+len(fixed))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := fixed[k]; !ok {
			out = append(out, kv)
		}
	}
	for _, k := range []string{"CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOARM64", "GOFLAGS"} {
		out = append(out, k+"="+fixed[k])
	}
	return out
}

// writeFile writes data to path through a temporary file renamed into place, so that an
// interrupted release never leaves a truncated archive under its final name.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
