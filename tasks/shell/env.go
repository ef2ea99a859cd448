package shell

import (
	"slices"
	"strings"

	"github.com/dlite-dev/dlite/tasks"
)

// runnerSettingPrefixes are the prefixes of the variables that configure the runner, the
// account secret and tokens among them: DLITE_* for dlite, DRONE_DELEGATE_* for the names the
// older delegate client read. Compared case-insensitively, as a lower-case copy would leak the
// same secret.
var runnerSettingPrefixes = []string{"DLITE_", "DRONE_DELEGATE_"}

// Variables that tell a script which task it runs, set from the task's envelope. They are the
// only DLITE_* variables a script sees.
const (
	// EnvTaskID holds the task's id on the manager.
	EnvTaskID = "DLITE_TASK_ID"
	// EnvTaskType holds the task's type, SHELL_SCRIPT_TASK.
	EnvTaskType = "DLITE_TASK_TYPE"
)

func isRunnerSetting(name string) bool {
	upper := strings.ToUpper(name)
	for _, p := range runnerSettingPrefixes {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}

// environ builds a script's environment: base without the runner's settings, then the task's
// own variables, then the task's id and type, each layer overriding the one before. The result
// is sorted so a script's environment does not depend on map order.
func environ(base []string, extra map[string]string, env *tasks.Envelope) []string {
	vars := make(map[string]string, len(base)+len(extra)+2)
	for _, kv := range base {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" || isRunnerSetting(name) {
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
