package shell

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dlite-dev/dlite/internal/procgroup"
)

// maxVarsBytes bounds how much of the output-variables file is read back, so a script that puts
// a huge value into a requested variable cannot exhaust the runner's memory. Entries past the
// bound are dropped whole.
const maxVarsBytes = 1 << 20

// wrapperFunc is the shell function that records the output variables. Functions and variables
// live in different namespaces, so no requested variable can collide with it.
const wrapperFunc = "__dlite_output_vars"

// wrapper returns the command the shell runs: it sources the script so the script's variables
// stay in this shell and, when variables are requested, installs an EXIT trap that writes their
// final values to varsPath. The trap runs on a normal end, on `exit` and on fatal shell errors,
// and the shell keeps the script's exit status after it. It writes each variable that is set as
// name=value followed by NUL, the one byte a shell value cannot contain.
//
// A script that installs its own EXIT trap, or replaces the shell with exec, skips the recording;
// its output variables are then empty.
func wrapper(scriptPath, varsPath string, names []string) string {
	var b strings.Builder
	if len(names) > 0 {
		fmt.Fprintf(&b, "%s() {\n\t{\n", wrapperFunc)
		for _, n := range names {
			// ${n+x} tests "set" without tripping `set -u`; `command` skips functions a script
			// may have defined with the same name as a builtin.
			fmt.Fprintf(&b, "\t\tcase ${%s+x} in x) command printf '%%s=%%s\\000' %s \"$%s\";; esac\n", n, n, n)
		}
		// >| writes even under `set -C`.
		fmt.Fprintf(&b, "\t} >| %s\n}\ntrap %s EXIT\n", procgroup.ShellQuote(varsPath), wrapperFunc)
	}
	fmt.Fprintf(&b, ". %s\n", procgroup.ShellQuote(scriptPath))
	return b.String()
}

// readVars reads the values the EXIT trap recorded. A missing file means the trap never ran
// (the script was killed, replaced the trap or exec'd another program): no values, no error.
func readVars(path string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return map[string]string{}, nil
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return map[string]string{}, nil
	}
	if err != nil {
		return map[string]string{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxVarsBytes))
	if err != nil {
		return map[string]string{}, err
	}
	return parseVars(data, names), nil
}

// parseVars decodes NUL-terminated name=value entries, keeping only the names asked for. An
// unterminated last entry was cut short (by the size bound or a killed shell) and is dropped.
func parseVars(data []byte, names []string) map[string]string {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]string, len(names))
	for {
		end := bytes.IndexByte(data, 0)
		if end < 0 {
			return out
		}
		name, value, ok := bytes.Cut(data[:end], []byte("="))
		data = data[end+1:]
		if ok && want[string(name)] {
			out[string(name)] = string(value)
		}
	}
}
