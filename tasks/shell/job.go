package shell

import (
	"github.com/dlite-dev/dlite/internal/procgroup"
	"path/filepath"
	"strings"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
)

// MaxOutputVars is how many output variables a task may ask for, as the task spec allows.
const MaxOutputVars = 100

// job is a task's data after it has been checked: everything Run needs, nothing it must re-check.
type job struct {
	script string
	shell  gentasks.ShellScriptDataShell
	env    map[string]string
	dir    string   // empty: a new temporary directory
	vars   []string // shell identifiers, no duplicates, in the order asked for
}

// newJob checks data again even though the runtime validated it against the schema: the
// handler can be called by other code, and the names and paths below end up in a shell.
// Its errors are ErrInvalidTaskData and name the field that is wrong.
func newJob(data *gentasks.ShellScriptData) (job, error) {
	if data == nil {
		return job{}, invalid("the task has no data")
	}
	j := job{script: data.Script, shell: gentasks.ShellScriptDataShellSh}
	if j.script == "" {
		return job{}, invalid("script is empty")
	}
	if data.Shell != nil {
		if !data.Shell.Valid() {
			return job{}, invalid("shell %q is not one of sh, bash", *data.Shell)
		}
		j.shell = *data.Shell
	}
	if data.Env != nil {
		for name, value := range *data.Env {
			if name == "" || strings.ContainsAny(name, "=\x00") {
				return job{}, invalid("env: %q is not a valid variable name", name)
			}
			if strings.ContainsRune(value, 0) {
				return job{}, invalid("env: the value of %s contains a NUL byte", name)
			}
		}
		j.env = *data.Env
	}
	if data.WorkingDirectory != nil && *data.WorkingDirectory != "" {
		dir := *data.WorkingDirectory
		if strings.ContainsRune(dir, 0) {
			return job{}, invalid("workingDirectory contains a NUL byte")
		}
		// A relative path would be resolved against wherever the runner happened to start.
		if !filepath.IsAbs(dir) {
			return job{}, invalid("workingDirectory %q is not an absolute path", dir)
		}
		j.dir = filepath.Clean(dir)
	}
	if data.OutputVars != nil {
		names := *data.OutputVars
		if len(names) > MaxOutputVars {
			return job{}, invalid("outputVars lists %d names, at most %d are allowed", len(names), MaxOutputVars)
		}
		seen := make(map[string]bool, len(names))
		for _, name := range names {
			if !procgroup.IsVariableName(name) {
				return job{}, invalid("outputVars: %q is not a shell variable name", name)
			}
			if !seen[name] {
				seen[name] = true
				j.vars = append(j.vars, name)
			}
		}
	}
	return j, nil
}

func invalid(format string, args ...any) error {
	return errs.Newf(errs.CodeInvalidTaskData, "", format, args...)
}
