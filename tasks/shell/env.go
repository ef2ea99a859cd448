package shell

import (
	"slices"
	"strings"

	"github.com/dlite-dev/dlite/internal/procgroup"
	"github.com/dlite-dev/dlite/tasks"
)

// Variables that tell a script which task it runs, set from the task's envelope. They are the
// only DLITE_* variables a script sees.
const (
	// EnvTaskID holds the task's id on the manager.
	EnvTaskID = "DLITE_TASK_ID"
	// EnvTaskType holds the task's type, SHELL_SCRIPT_TASK.
	EnvTaskType = "DLITE_TASK_TYPE"
)

// environ builds a script's environment: base without the runner's settings, then the task's
// own variables, then the task's id and type, each layer overriding the one before. The result
// is sorted so a script's environment does not depend on map order.
func environ(base []string, extra map[string]string, env *tasks.Envelope) []string {
	vars := make(map[string]string, len(base)+len(extra)+2)
	for _, kv := range base {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || procgroup.IsRunnerSetting(name) {
			continue
		}
		vars[name] = value
	}
	for name, value := range extra {
		vars[name] = value
	}
	if env != nil {
		if env.ID != "" {
			vars[EnvTaskID] = env.ID
		}
		if env.Type != "" {
			vars[EnvTaskType] = env.Type
		}
	}
	out := make([]string, 0, len(vars))
	for name, value := range vars {
		out = append(out, name+"="+value)
	}
	slices.Sort(out)
	return out
}
