//go:build unix

package procgroup_test

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/procgroup"
)

// A quoted word reaches a POSIX shell as it was, whatever it holds.
func TestShellQuoteKeepsTheWord(t *testing.T) {
	require.Equal(t, `'it'\''s'`, procgroup.ShellQuote("it's"))
	for _, word := range []string{"", "plain", "it's", `$(echo no) "x" \n`, "a b\nc", "''"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+procgroup.ShellQuote(word)).Output()
		require.NoError(t, err)
		require.Equal(t, word, string(out))
	}
}
