package engine

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDotenv(t *testing.T) {
	t.Parallel()
	got, err := parseDotenv(strings.NewReader(strings.Join([]string{
		"# a comment",
		"",
		"PLAIN=value with spaces  ",
		"export EXPORTED=1",
		`DOUBLE="a\nb \"q\""`,
		`SINGLE='raw\n'`,
		"EQUALS=a=b=c",
		"B64=__B64__" + "bGluZTEKbGluZT0y", // "line1\nline=2"
		"RAWB64=__B64__eA",                 // "x", unpadded
		"CRLF=yes\r",
		"no equals sign here",
		"=no key",
		"LATER=1",
		"LATER=2",
	}, "\n")))
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"PLAIN":    "value with spaces",
		"EXPORTED": "1",
		"DOUBLE":   "a\nb \"q\"",
		"SINGLE":   `raw\n`,
		"EQUALS":   "a=b=c",
		"B64":      "line1\nline=2",
		"RAWB64":   "x",
		"CRLF":     "yes",
		"LATER":    "2",
	}, got)

	_, err = parseDotenv(strings.NewReader("BAD=__B64__!!!\n"))
	require.ErrorContains(t, err, "BAD")
	for _, n := range []int{MaxOutputLine + 1, 3 * MaxOutputLine} {
		_, err = parseDotenv(strings.NewReader("K=" + strings.Repeat("x", n) + "\n"))
		require.ErrorIs(t, err, errLineTooLong)
	}
	got, err = parseDotenv(strings.NewReader("K=" + strings.Repeat("x", MaxOutputLine-2) + "\n"))
	require.NoError(t, err)
	require.Len(t, got["K"], MaxOutputLine-2)
}

func TestOutputScriptPerEntrypoint(t *testing.T) {
	t.Parallel()
	files := newStepFiles("/tmp/engine", "s1", func(p ...string) string { return strings.Join(p, "/") })
	tests := []struct {
		entrypoint string
		b64        bool
		want       []string
	}{
		{"sh", false, []string{"case ${A+x} in x) printf '%s=%s\\n' A \"$A\" >> '/tmp/engine/s1-output.env';; esac"}},
		{"/bin/bash", true, []string{"base64 | tr -d '\\n'", "'%s=__B64__%s\\n'"}},
		{"pwsh", false, []string{"if (Test-Path Env:A) { Add-Content -Path '/tmp/engine/s1-output.env' -Value ('A=' + [string]$Env:A) }"}},
		{`C:\Windows\powershell.exe`, true, []string{"[Convert]::ToBase64String", "'__B64__'"}},
		{"python3", false, []string{"import os as __dlite_os", `if "A" in __dlite_os.environ:`, `open("/tmp/engine/s1-output.env", 'a')`}},
	}
	for _, tt := range tests {
		spec := &StepSpec{ID: "s1", Entrypoint: []string{tt.entrypoint, "-c"}, Commands: []string{"echo hi"}, OutputVars: []string{"A"},
			Outputs: []OutputSpec{{Key: "tok", Value: "T", Type: OutputSecret}}}
		require.NoError(t, appendOutputScript(spec, files, tt.b64))
		require.True(t, strings.HasPrefix(spec.Commands[0], "echo hi\n"), tt.entrypoint)
		for _, w := range tt.want {
			require.Contains(t, spec.Commands[0], w, tt.entrypoint)
		}
		require.Contains(t, spec.Commands[0], "s1-output-secrets.env", "secret outputs go to the secret file")
	}
}

func TestFileStem(t *testing.T) {
	t.Parallel()
	require.Equal(t, "step_1.a-b", fileStem("step_1.a-b"))
	for _, id := range []string{"../escape", "a/b", ".hidden", "with space", strings.Repeat("x", 101)} {
		stem := fileStem(id)
		require.True(t, strings.HasPrefix(stem, "step-"), id)
		require.NotContains(t, stem, "/")
	}
}

func FuzzParseDotenv(f *testing.F) {
	f.Add("A=1\nB=\"x\\ny\"\nC=__B64__eA==\n")
	f.Add("export K='v'\r\n# c\n=x\n")
	f.Add("K=" + strings.Repeat("x", MaxOutputLine+1))
	f.Fuzz(func(t *testing.T, data string) {
		got, err := parseDotenv(strings.NewReader(data))
		if err != nil {
			return
		}
		for k := range got {
			if k == "" || strings.ContainsAny(k, "=\n") {
				t.Fatalf("parsed a bad key %q", k)
			}
		}
		for line := range strings.SplitSeq(data, "\n") {
			if len(strings.TrimSuffix(line, "\r")) > MaxOutputLine {
				t.Fatalf("a line of %d bytes was accepted", len(line))
			}
		}
	})
}
