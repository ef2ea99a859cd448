package release

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// ErrNotInChangelog is returned when a release version has no entry in CHANGELOG.md.
var ErrNotInChangelog = errors.New("version has no entry in CHANGELOG.md")

// Groups are the headings a changelog entry may use, those of Keep a Changelog 1.1.0.
var Groups = []string{"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}

// Unreleased is the name of the changelog section that collects changes not yet released.
const Unreleased = "Unreleased"

// Changelog is a parsed CHANGELOG.md in the Keep a Changelog form.
type Changelog struct {
	// Entries are the released versions, newest first, as written.
	Entries []Entry
}

// Entry is one released version of the changelog.
type Entry struct {
	// Version is the version as the heading writes it, without the v: "0.1.0".
	Version string
	// Date is the release day, in UTC.
	Date time.Time
	// Yanked is set for a version withdrawn after its release ("## [0.1.1] - 2026-12-01 [YANKED]").
	Yanked bool
	// Groups are the group headings of the entry, as written ("Added", "Fixed").
	Groups []string
	// Line is the heading's line number in the file, from 1.
	Line int
}

// Entry returns the changelog entry of the release version v ("v0.1.0"), if there is one.
func (c *Changelog) Entry(v string) (Entry, bool) {
	for _, e := range c.Entries {
		if "v"+e.Version == v {
			return e, true
		}
	}
	return Entry{}, false
}

var (
	versionHeading = regexp.MustCompile(`^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})( \[YANKED\])?$`)
	linkDefinition = regexp.MustCompile(`^\[([^\]]+)\]: \S+$`)
)

// ParseChangelog parses and checks a changelog in the Keep a Changelog 1.1.0 form:
//
//   - a "# Changelog" title first;
//   - "## [Unreleased]" as the first section, then one "## [X.Y.Z] - YYYY-MM-DD" section per
//     release (optionally followed by " [YANKED]"), X.Y.Z being semantic versioning;
//   - versions strictly newest first, and release dates never later than the one above;
//   - inside a section only "### " headings among Groups, each at most once and not empty, and
//     every released version with at least one change;
//   - a link definition ("[0.1.0]: URL") for every section heading.
//
// Every problem found is reported, each with its line number, joined into one error.
func ParseChangelog(data []byte) (*Changelog, error) {
	p := &changelogParser{links: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		p.line++
		p.parseLine(strings.TrimRight(sc.Text(), " \t\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read changelog: %w", err)
	}
	p.finish()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &p.log, nil
}

// section is the "## " section being read.
type section struct {
	name    string // "Unreleased" or the version
	line    int
	items   int    // list items anywhere in the section
	group   string // the current "### " group, if any
	gline   int
	gitems  int // list items in the current group
	groups  map[string]bool
	release bool
}

// heading is a "## " heading: the name its link definition must use, and where it is.
type heading struct {
	name string
	line int
}

type changelogParser struct {
	log     Changelog
	errs    []error
	line    int
	title   bool
	fence   bool
	cur     *section
	headers []heading
	links   map[string]bool
}

func (p *changelogParser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("CHANGELOG.md:%d: "+format, append([]any{line}, args...)...))
}

func (p *changelogParser) parseLine(s string) {
	if strings.HasPrefix(s, "```") {
		p.fence = !p.fence
		return
	}
	if p.fence {
		return
	}
	if m := linkDefinition.FindStringSubmatch(s); m != nil {
		p.links[strings.ToLower(m[1])] = true
		return
	}
	switch {
	case strings.HasPrefix(s, "# "):
		if p.title || p.line != 1 {
			p.errorf(p.line, "%q: the only first-level heading is the title \"# Changelog\", on the first line", s)
		}
		if s != "# Changelog" {
			p.errorf(p.line, "%q: want the title \"# Changelog\"", s)
		}
		p.title = true
	case strings.HasPrefix(s, "## "):
		p.closeSection()
		p.openSection(s)
	case strings.HasPrefix(s, "### "):
		p.openGroup(strings.TrimPrefix(s, "### "))
	case strings.HasPrefix(s, "#"):
		p.errorf(p.line, "%q: only \"## \" version and \"### \" group headings are allowed below the title", s)
	case strings.HasPrefix(s, "- ") || strings.HasPrefix(s, "* "):
		if p.cur == nil {
			p.errorf(p.line, "a change listed before the first version heading")
			return
		}
		if p.cur.group == "" {
			p.errorf(p.line, "a change of %s listed outside a group; put it under one of ### %s", p.cur.name, strings.Join(Groups, ", ### "))
		}
		p.cur.items++
		p.cur.gitems++
	}
}

func (p *changelogParser) openSection(s string) {
	if !p.title {
		p.errorf(p.line, "the changelog must start with the title \"# Changelog\"")
		p.title = true
	}
	sec := &section{line: p.line, groups: map[string]bool{}}
	p.cur = sec
	if s == "## ["+Unreleased+"]" {
		sec.name = Unreleased
		if len(p.headers) > 0 {
			p.errorf(p.line, "\"## [Unreleased]\" must be the first section and appear once")
		}
		p.headers = append(p.headers, heading{Unreleased, p.line})
		return
	}
	m := versionHeading.FindStringSubmatch(s)
	if m == nil {
		p.errorf(p.line, "%q: want \"## [Unreleased]\" or \"## [X.Y.Z] - YYYY-MM-DD\"", s)
		sec.name = s
		return
	}
	sec.name, sec.release = m[1], true
	p.headers = append(p.headers, heading{m[1], p.line})
	if len(p.headers) == 1 {
		p.errorf(p.line, "\"## [Unreleased]\" must come before the first version")
	}
	if err := CheckVersion("v" + m[1]); err != nil {
		p.errorf(p.line, "version [%s]: %v", m[1], err)
		return
	}
	date, err := time.Parse(time.DateOnly, m[2])
	if err != nil {
		p.errorf(p.line, "date %s of %s: want YYYY-MM-DD: %v", m[2], m[1], err)
		return
	}
	entry := Entry{Version: m[1], Date: date, Yanked: m[3] != "", Line: p.line}
	if n := len(p.log.Entries); n > 0 {
		prev := p.log.Entries[n-1]
		if semver.Compare("v"+entry.Version, "v"+prev.Version) >= 0 {
			p.errorf(p.line, "version %s follows %s (line %d): versions must be listed strictly newest first", entry.Version, prev.Version, prev.Line)
		}
		if entry.Date.After(prev.Date) {
			p.errorf(p.line, "version %s is dated %s, after %s's %s (line %d): a newer version cannot be older", entry.Version, m[2], prev.Version, prev.Date.Format(time.DateOnly), prev.Line)
		}
	}
	p.log.Entries = append(p.log.Entries, entry)
}

func (p *changelogParser) openGroup(g string) {
	if p.cur == nil {
		p.errorf(p.line, "group %q before the first version heading", g)
		return
	}
	p.closeGroup()
	allowed := false
	for _, a := range Groups {
		allowed = allowed || a == g
	}
	if !allowed {
		p.errorf(p.line, "group %q in %s: want one of %s", g, p.cur.name, strings.Join(Groups, ", "))
	}
	if p.cur.groups[g] {
		p.errorf(p.line, "group %q appears twice in %s", g, p.cur.name)
	}
	p.cur.groups[g] = true
	p.cur.group, p.cur.gline, p.cur.gitems = g, p.line, 0
	if n := len(p.log.Entries); p.cur.release && n > 0 && p.log.Entries[n-1].Line == p.cur.line {
		p.log.Entries[n-1].Groups = append(p.log.Entries[n-1].Groups, g)
	}
}

func (p *changelogParser) closeGroup() {
	if p.cur != nil && p.cur.group != "" && p.cur.gitems == 0 {
		p.errorf(p.cur.gline, "group %q of %s lists no change: remove it or add one", p.cur.group, p.cur.name)
	}
}

func (p *changelogParser) closeSection() {
	if p.cur == nil {
		return
	}
	p.closeGroup()
	if p.cur.release && p.cur.items == 0 {
		p.errorf(p.cur.line, "version %s lists no change", p.cur.name)
	}
	p.cur = nil
}

func (p *changelogParser) finish() {
	p.closeSection()
	if p.fence {
		p.errorf(p.line, "a code block is not closed")
	}
	if !p.title {
		p.errorf(1, "the changelog must start with the title \"# Changelog\"")
	}
	if len(p.headers) == 0 {
		p.errorf(p.line, "no \"## [Unreleased]\" section")
	}
	for _, h := range p.headers {
		if !p.links[strings.ToLower(h.name)] {
			p.errorf(h.line, "[%s] has no link definition; add \"[%s]: URL\" at the bottom", h.name, h.name)
		}
	}
}
