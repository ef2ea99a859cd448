package shell

import (
	"encoding/json"
	"errors"
	"github.com/dlite-dev/dlite/internal/procgroup"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
	"github.com/dlite-dev/dlite/tasks"
)

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"under the limit", 8, []string{"ab", "cd"}, "abcd"},
		{"exactly the limit", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps once", 4, []string{"abc", "def"}, "cdef"},
		{"wraps many times", 3, []string{"a", "b", "c", "d", "e", "f", "g"}, "efg"},
		{"one write larger than the limit", 4, []string{"0123456789"}, "6789"},
		{"large write after small ones", 4, []string{"ab", "0123456789", "x"}, "789x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newTailBuffer(tc.limit)
			total := 0
			for _, w := range tc.writes {
				n, err := b.Write([]byte(w))
				require.NoError(t, err)
				require.Equal(t, len(w), n)
				total += len(w)
			}
			require.Equal(t, tc.want, b.String())
			require.Equal(t, int64(total), b.Total())
		})
	}
}

func TestTailBufferDropsSplitRune(t *testing.T) {
	t.Parallel()
	b := newTailBuffer(5)
	_, _ = b.Write([]byte("ééé")) // 6 bytes; the cut lands inside the first é
	require.Equal(t, "éé", b.String())

	// Without truncation a leading continuation byte is the script's own output: kept as is.
	b = newTailBuffer(5)
	_, _ = b.Write([]byte{0x80, 'a'})
	require.Equal(t, "\x80a", b.String())
}

func TestParseVars(t *testing.T) {
	t.Parallel()
	data := []byte("A=1\x00B=x=y\nz\x00C=\x00IGNORED=1\x00=noname\x00novalue\x00D=cut sho")
	got := parseVars(data, []string{"A", "B", "C", "D", "E"})
	require.Equal(t, map[string]string{"A": "1", "B": "x=y\nz", "C": ""}, got)
	require.Empty(t, parseVars(nil, []string{"A"}))
}

func TestWrapperQuotesPaths(t *testing.T) {
	t.Parallel()
	w := wrapper("/tmp/it's here/script", "/tmp/it's here/vars", []string{"A"})
	require.Contains(t, w, `'/tmp/it'\''s here/script'`)
	require.Contains(t, w, `>| '/tmp/it'\''s here/vars'`)
	require.Contains(t, w, "trap "+wrapperFunc+" EXIT")

	require.Equal(t, ". '/s'\n", wrapper("/s", "/v", nil), "no trap without output variables")
}

func TestNewJob(t *testing.T) {
	t.Parallel()
	bash := gentasks.ShellScriptDataShellBash
	vars := []string{"A", "_b1", "A"}
	dir := "/tmp/x/../y"
	j, err := newJob(&gentasks.ShellScriptData{Script: "true", Shell: &bash, OutputVars: &vars, WorkingDirectory: &dir})
	require.NoError(t, err)
	require.Equal(t, bash, j.shell)
	require.Equal(t, []string{"A", "_b1"}, j.vars)
	require.Equal(t, "/tmp/y", j.dir)

	j, err = newJob(&gentasks.ShellScriptData{Script: "true"})
	require.NoError(t, err)
	require.Equal(t, gentasks.ShellScriptDataShellSh, j.shell)
	require.Empty(t, j.dir)
}

func TestNewJobRejects(t *testing.T) {
	t.Parallel()
	ptr := func(s string) *string { return &s }
	shell := func(s string) *gentasks.ShellScriptDataShell { v := gentasks.ShellScriptDataShell(s); return &v }
	names := func(n ...string) *[]string { return &n }
	env := func(kv ...string) *map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &m
	}
	tooMany := make([]string, MaxOutputVars+1)
	for i := range tooMany {
		tooMany[i] = "V"
	}
	cases := []struct {
		name string
		data *gentasks.ShellScriptData
		want string
	}{
		{"no data", nil, "no data"},
		{"empty script", &gentasks.ShellScriptData{}, "script is empty"},
		{"unknown shell", &gentasks.ShellScriptData{Script: "x", Shell: shell("zsh")}, `shell "zsh"`},
		{"relative dir", &gentasks.ShellScriptData{Script: "x", WorkingDirectory: ptr("work")}, "not an absolute path"},
		{"NUL in dir", &gentasks.ShellScriptData{Script: "x", WorkingDirectory: ptr("/a\x00b")}, "NUL"},
		{"var starts with digit", &gentasks.ShellScriptData{Script: "x", OutputVars: names("1A")}, `"1A"`},
		{"var with dash", &gentasks.ShellScriptData{Script: "x", OutputVars: names("A-B")}, `"A-B"`},
		{"var with injection", &gentasks.ShellScriptData{Script: "x", OutputVars: names("A;rm")}, `"A;rm"`},
		{"empty var", &gentasks.ShellScriptData{Script: "x", OutputVars: names("")}, `""`},
		{"too many vars", &gentasks.ShellScriptData{Script: "x", OutputVars: &tooMany}, "at most 100"},
		{"env name with =", &gentasks.ShellScriptData{Script: "x", Env: env("A=B", "1")}, `"A=B"`},
		{"empty env name", &gentasks.ShellScriptData{Script: "x", Env: env("", "1")}, `""`},
		{"NUL in env value", &gentasks.ShellScriptData{Script: "x", Env: env("A", "1\x002")}, "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := newJob(tc.data)
			require.ErrorIs(t, err, errs.ErrInvalidTaskData)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestEnviron(t *testing.T) {
	t.Parallel()
	base := []string{
		"PATH=/bin",
		"KEEP=runner",
		"DLITE_ACCOUNT_SECRET=secret",
		"dlite_token=secret",
		"DRONE_DELEGATE_ACCOUNT_SECRET=secret",
		"DLITE_TASK_ID=stale",
		"NOEQUALS",
		"=C:",
		"VALUE_WITH=equals=inside",
	}
	got := environ(base, map[string]string{"KEEP": "task", "EXTRA": "1"},
		&tasks.Envelope{ID: "t-1", Type: "SHELL_SCRIPT_TASK"})
	require.Equal(t, []string{
		"DLITE_TASK_ID=t-1",
		"DLITE_TASK_TYPE=SHELL_SCRIPT_TASK",
		"EXTRA=1",
		"KEEP=task",
		"PATH=/bin",
		"VALUE_WITH=equals=inside",
	}, got)

	require.Equal(t, []string{"PATH=/bin"}, environ([]string{"PATH=/bin", "DLITE_NAME=x"}, nil, nil))
}

// FuzzShellData feeds arbitrary JSON through the decoding of the generated request type, the
// handler's own checks and the code that builds the shell wrapper and reads variables back.
// Nothing is executed.
func FuzzShellData(f *testing.F) {
	f.Add([]byte(`{"script":"echo hi"}`))
	f.Add([]byte(`{"script":"x","shell":"bash","env":{"A":"1"},"workingDirectory":"/tmp","outputVars":["A","B"]}`))
	f.Add([]byte(`{"script":"x","outputVars":["A-B","1"]}`))
	f.Add([]byte(`{"script":"","shell":"zsh","workingDirectory":"rel"}`))
	f.Add([]byte("A=1\x00B=2\x00C"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var data gentasks.ShellScriptData
		if json.Unmarshal(raw, &data) == nil {
			j, err := newJob(&data)
			if err != nil {
				require.True(t, errors.Is(err, errs.ErrInvalidTaskData), "%v", err)
			} else {
				for _, n := range j.vars {
					require.True(t, procgroup.IsVariableName(n))
				}
				w := wrapper("/ctl/script", "/ctl/vars", j.vars)
				require.True(t, strings.HasSuffix(w, ". '/ctl/script'\n"))
				_ = environ([]string{"A=1", "DLITE_X=2"}, j.env, nil)
			}
		}
		names := strings.FieldsFunc(string(raw), func(r rune) bool { return r == 0 || r == '=' })
		vars := parseVars(raw, names)
		for name, value := range vars {
			require.NotContains(t, name, "=")
			require.NotContains(t, value, "\x00")
		}
		b := newTailBuffer(7)
		_, _ = b.Write(raw)
		s := b.String()
		require.LessOrEqual(t, len(s), 7)
		if len(raw) > 7 && utf8.Valid(raw) {
			require.True(t, utf8.ValidString(s))
		}
	})
}
