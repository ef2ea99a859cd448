package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const goodChangelog = `# Changelog

All notable changes are documented here.

## [Unreleased]

## [1.1.0-rc.1] - 2026-12-20

### Fixed

- A fix.

## [1.0.0] - 2026-12-20 [YANKED]

### Added

- A feature:
  with a second line.

### Security

* A hardening.

## [0.1.0] - 2026-11-29

### Added

- The first version.

` + "```" + `
## not a heading: inside a code block
` + "```" + `

[unreleased]: https://example.com/compare/v1.1.0-rc.1...HEAD
[1.1.0-rc.1]: https://example.com/compare/v1.0.0...v1.1.0-rc.1
[1.0.0]: https://example.com/compare/v0.1.0...v1.0.0
[0.1.0]: https://example.com/releases/tag/v0.1.0
`

func TestParseChangelog(t *testing.T) {
	t.Parallel()
	log, err := ParseChangelog([]byte(goodChangelog))
	require.NoError(t, err)
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		require.NoError(t, err)
		return d
	}
	require.Equal(t, []Entry{
		{Version: "1.1.0-rc.1", Date: day("2026-12-20"), Groups: []string{"Fixed"}, Line: 7},
		{Version: "1.0.0", Date: day("2026-12-20"), Yanked: true, Groups: []string{"Added", "Security"}, Line: 13},
		{Version: "0.1.0", Date: day("2026-11-29"), Groups: []string{"Added"}, Line: 24},
	}, log.Entries)

	e, ok := log.Entry("v1.0.0")
	require.True(t, ok)
	require.Equal(t, "1.0.0", e.Version)
	_, ok = log.Entry("1.0.0")
	require.False(t, ok, "a version without its v is not a release version")
	_, ok = log.Entry("v0.2.0")
	require.False(t, ok)
}

func TestParseChangelogRejects(t *testing.T) {
	t.Parallel()
	const links = "\n[unreleased]: u\n[0.2.0]: u\n[0.1.0]: u\n"
	tests := []struct {
		name, text, want string
	}{
		{"no title", "## [Unreleased]\n" + links, `must start with the title "# Changelog"`},
		{"wrong title", "# Changes\n\n## [Unreleased]\n" + links, `want the title "# Changelog"`},
		{"no unreleased", "# Changelog\n\n## [0.1.0] - 2026-11-29\n### Added\n- x\n" + links, `"## [Unreleased]" must come before the first version`},
		{"unreleased not first", "# Changelog\n\n## [0.1.0] - 2026-11-29\n### Added\n- x\n## [Unreleased]\n" + links, `must be the first section and appear once`},
		{"empty file", "# Changelog\n", `no "## [Unreleased]" section`},
		{"heading without date", "# Changelog\n## [Unreleased]\n## [0.1.0]\n### Added\n- x\n" + links, `want "## [Unreleased]" or "## [X.Y.Z] - YYYY-MM-DD"`},
		{"version with v", "# Changelog\n## [Unreleased]\n## [v0.1.0] - 2026-11-29\n### Added\n- x\n[v0.1.0]: u\n" + links, `version [v0.1.0]`},
		{"short version", "# Changelog\n## [Unreleased]\n## [0.1] - 2026-11-29\n### Added\n- x\n[0.1]: u\n" + links, `write out all three numbers`},
		{"bad date", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-13-01\n### Added\n- x\n" + links, `date 2026-13-01 of 0.1.0`},
		{"american date", "# Changelog\n## [Unreleased]\n## [0.1.0] - 11/29/2026\n### Added\n- x\n" + links, `want "## [Unreleased]" or "## [X.Y.Z] - YYYY-MM-DD"`},
		{"oldest first", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Added\n- x\n## [0.2.0] - 2026-11-30\n### Added\n- y\n" + links, `versions must be listed strictly newest first`},
		{"same version twice", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Added\n- x\n## [0.1.0] - 2026-11-29\n### Added\n- y\n" + links, `versions must be listed strictly newest first`},
		{"newer version dated earlier", "# Changelog\n## [Unreleased]\n## [0.2.0] - 2026-11-28\n### Added\n- x\n## [0.1.0] - 2026-11-29\n### Added\n- y\n" + links, `a newer version cannot be older`},
		{"unknown group", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Improved\n- x\n" + links, `group "Improved" in 0.1.0: want one of Added, Changed, Deprecated, Removed, Fixed, Security`},
		{"group twice", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Added\n- x\n### Added\n- y\n" + links, `group "Added" appears twice in 0.1.0`},
		{"empty group", "# Changelog\n## [Unreleased]\n### Fixed\n## [0.1.0] - 2026-11-29\n### Added\n- x\n" + links, `group "Fixed" of Unreleased lists no change`},
		{"empty release", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n" + links, `version 0.1.0 lists no change`},
		{"change outside a group", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n- x\n" + links, `listed outside a group`},
		{"deeper heading", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Added\n#### Detail\n- x\n" + links, `only "## " version and "### " group headings`},
		{"missing link", "# Changelog\n## [Unreleased]\n## [0.1.0] - 2026-11-29\n### Added\n- x\n\n[unreleased]: u\n", `[0.1.0] has no link definition`},
		{"open code block", "# Changelog\n## [Unreleased]\n```\n" + links, `a code block is not closed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseChangelog([]byte(tt.text))
			require.ErrorContains(t, err, tt.want)
			require.Contains(t, err.Error(), "CHANGELOG.md:", "every problem names its line")
		})
	}
}

func TestParseChangelogReportsEveryProblem(t *testing.T) {
	t.Parallel()
	text := "# Changelog\n## [Unreleased]\n## [0.1] - 2026-11-29\n### Added\n- x\n### Improved\n- y\n"
	_, err := ParseChangelog([]byte(text))
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		"CHANGELOG.md:3: version [0.1]",
		`CHANGELOG.md:6: group "Improved"`,
		"CHANGELOG.md:2: [Unreleased] has no link definition",
	} {
		require.Contains(t, msg, want)
	}
}

// TestRepositoryChangelog keeps the project's own CHANGELOG.md in the form `make release` relies
// on: it runs with every `make test`, so a malformed heading fails CI before a release is tried.
func TestRepositoryChangelog(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "..", "CHANGELOG.md"))
	require.NoError(t, err)
	log, err := ParseChangelog(data)
	require.NoError(t, err)
	require.NotEmpty(t, log.Entries, "CHANGELOG.md lists no release")
	for _, e := range log.Entries {
		require.NotEmpty(t, e.Groups, "version %s", e.Version)
	}
	require.True(t, strings.HasPrefix(string(data), "# Changelog\n"))
}
