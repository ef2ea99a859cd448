package procgroup

import "strings"

// RunnerSettingPrefixes are the prefixes of the variables that configure the runner, the account
// secret and tokens among them: DLITE_* for dlite, DRONE_DELEGATE_* for the names the older
// delegate client read. They are compared case-insensitively, as a lower-case copy would leak the
// same secret.
var RunnerSettingPrefixes = []string{"DLITE_", "DRONE_DELEGATE_"}

// IsRunnerSetting reports whether the variable name is one of the runner's own settings, which a
// program the runner starts must not see.
func IsRunnerSetting(name string) bool {
	upper := strings.ToUpper(name)
	for _, p := range RunnerSettingPrefixes {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}

// IsVariableName reports whether name is a POSIX shell variable name, [A-Za-z_][A-Za-z0-9_]*:
// the names a script can export and a runner can read back as an output.
func IsVariableName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ShellQuote quotes s as one word for a POSIX shell: inside single quotes only the quote itself is
// special.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
