package release

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/semver"
)

// ErrInvalidVersion is returned for a release version that is not of the form vMAJOR.MINOR.PATCH,
// optionally followed by a pre-release such as -rc.1.
var ErrInvalidVersion = errors.New("invalid release version")

// CheckVersion reports whether v can name a release: semantic versioning 2.0.0 with the "v"
// prefix of Go modules and git tags, all three numbers written out. Build metadata (+...) is
// refused: it would give two names to one version, and Go's module system ignores it.
func CheckVersion(v string) error {
	switch {
	case !strings.HasPrefix(v, "v"):
		return fmt.Errorf("%w %q: want vMAJOR.MINOR.PATCH, e.g. v1.2.3 (the v is required)", ErrInvalidVersion, v)
	case !semver.IsValid(v):
		return fmt.Errorf("%w %q: not semantic versioning; want vMAJOR.MINOR.PATCH or vMAJOR.MINOR.PATCH-PRERELEASE, e.g. v1.2.3 or v1.3.0-rc.1", ErrInvalidVersion, v)
	case semver.Build(v) != "":
		return fmt.Errorf("%w %q: build metadata (%s) is not used in release versions", ErrInvalidVersion, v, semver.Build(v))
	case semver.Canonical(v) != v:
		return fmt.Errorf("%w %q: write out all three numbers, e.g. %s", ErrInvalidVersion, v, semver.Canonical(v))
	}
	return nil
}

// IsPrerelease reports whether the valid version v is a pre-release (v1.3.0-rc.1).
func IsPrerelease(v string) bool { return semver.Prerelease(v) != "" }
