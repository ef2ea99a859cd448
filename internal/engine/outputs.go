package engine

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/dlite-dev/dlite/internal/procgroup"
)

// The variables that tell a step where its output files are (CI-STAGE §5), and the files' names
// under the shared directory.
const (
	EnvDroneOutput       = "DRONE_OUTPUT"
	EnvOutputFile        = "HARNESS_OUTPUT_FILE"
	EnvOutputSecretFile  = "HARNESS_OUTPUT_SECRET_FILE"
	EnvDroneEnv          = "DRONE_ENV"
	EnvArtifactFile      = "PLUGIN_ARTIFACT_FILE"
	EnvArtifactFilePath  = "HARNESS_ARTIFACT_FILE_PATH"
	EnvAnnotationsFile   = "HARNESS_ANNOTATIONS_FILE"
	EnvScratchDir        = "HARNESS_SCRATCH_DIR"
	EnvNewGodotenv       = "CI_NEW_VERSION_GODOTENV"
	outputFileSuffix     = "-output.env"
	secretFileSuffix     = "-output-secrets.env"
	exportFileSuffix     = "-export.env"
	artifactFileSuffix   = "-artifact"
	annotationFileSuffix = "-annotations.json"
	scratchDirSuffix     = "-scratch"
)

// MaxOutputLine is the longest line of an output or export file, in bytes; a longer line fails the
// step, as it does with the Harness runners.
const MaxOutputLine = 64 << 10

// maxArtifact bounds how much of a step's artifact file is read back.
const maxArtifact = 4 << 20

// b64Prefix marks a base64-encoded value in an output file.
const b64Prefix = "__B64__"

// errOutputVarsNeedCommand is the message the Harness runners give for output variables of a
// step that has nothing to append their export to.
const errOutputVarsNeedCommand = "output variable should not be set for unset entrypoint or command"

// stepFiles are the paths of a step's output files.
type stepFiles struct {
	output, secrets, export, artifact, annotations, scratch string
}

func newStepFiles(shared, stem string, join func(...string) string) stepFiles {
	return stepFiles{
		output:      join(shared, stem+outputFileSuffix),
		secrets:     join(shared, stem+secretFileSuffix),
		export:      join(shared, stem+exportFileSuffix),
		artifact:    join(shared, stem+artifactFileSuffix),
		annotations: join(shared, stem+annotationFileSuffix),
		scratch:     join(shared, stem+scratchDirSuffix),
	}
}

// env are the variables naming the files, as the step sees them.
func (f stepFiles) env() map[string]string {
	return map[string]string{
		EnvDroneOutput:      f.output,
		EnvOutputFile:       f.output,
		EnvOutputSecretFile: f.secrets,
		EnvDroneEnv:         f.export,
		EnvArtifactFile:     f.artifact,
		EnvArtifactFilePath: f.artifact,
		EnvAnnotationsFile:  f.annotations,
		EnvScratchDir:       f.scratch,
	}
}

// fileStem names a step's files: its id when that is a plain name, else a hash of it.
func fileStem(stepID string) string {
	ok := stepID != "" && len(stepID) <= 100 && stepID[0] != '.'
	for i := 0; ok && i < len(stepID); i++ {
		c := stepID[i]
		ok = c == '_' || c == '-' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	if ok {
		return stepID
	}
	return "step-" + StageKey(stepID)[:32]
}

// exportVar is one variable the step's script must write to an output file.
type exportVar struct {
	name   string
	secret bool
}

// outputVarsToExport lists the variables a step exports: its OutputVars, then the variables its
// Outputs name (secrets go to the secret file), each once.
func outputVarsToExport(spec *StepSpec) []exportVar {
	seen := map[exportVar]bool{}
	var out []exportVar
	add := func(v exportVar) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, n := range spec.OutputVars {
		add(exportVar{name: n})
	}
	for _, o := range spec.Outputs {
		add(exportVar{name: outputEnvName(o), secret: o.Type == OutputSecret})
	}
	return out
}

func outputEnvName(o OutputSpec) string {
	if o.Value != "" {
		return o.Value
	}
	return o.Key
}

// scriptFlavour is the language of a step's script, from its entrypoint.
type scriptFlavour int

const (
	flavourShell scriptFlavour = iota
	flavourPowerShell
	flavourPython
)

func flavourOf(entrypoint string) (scriptFlavour, error) {
	name := strings.ToLower(path.Base(strings.ReplaceAll(entrypoint, `\`, "/")))
	name = strings.TrimSuffix(name, ".exe")
	switch name {
	case "sh", "bash", "ash", "dash", "zsh", "ksh":
		return flavourShell, nil
	case "pwsh", "powershell":
		return flavourPowerShell, nil
	case "python3", "python":
		return flavourPython, nil
	}
	return 0, fmt.Errorf("output variables need a sh, bash, ash, pwsh, powershell or python3 entrypoint, not %q", entrypoint)
}

// appendOutputScript adds to the step's script the lines that write its output variables to the
// output files (paths as the step sees them). With b64, values are written base64-encoded, which
// keeps newlines and any other byte intact.
func appendOutputScript(spec *StepSpec, files stepFiles, b64 bool) error {
	vars := outputVarsToExport(spec)
	if len(vars) == 0 {
		return nil
	}
	if len(spec.Entrypoint) == 0 || len(spec.Commands) == 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, errOutputVarsNeedCommand)
	}
	flavour, err := flavourOf(spec.Entrypoint[0])
	if err != nil {
		return fmt.Errorf("%w: step %s: %w", ErrInvalid, spec.ID, err)
	}
	var b strings.Builder
	b.WriteString(spec.Commands[0])
	if !strings.HasSuffix(spec.Commands[0], "\n") {
		b.WriteByte('\n')
	}
	if flavour == flavourPython {
		b.WriteString("import os as __dlite_os, base64 as __dlite_b64\n")
	}
	for _, v := range vars {
		file := files.output
		if v.secret {
			file = files.secrets
		}
		// A variable that is not set is not written, so a step may also write the file itself.
		switch flavour {
		case flavourShell:
			if b64 {
				fmt.Fprintf(&b, "case ${%s+x} in x) printf '%%s=%s%%s\\n' %s \"$(printf '%%s' \"$%s\" | base64 | tr -d '\\n')\" >> %s;; esac\n",
					v.name, b64Prefix, v.name, v.name, procgroup.ShellQuote(file))
			} else {
				fmt.Fprintf(&b, "case ${%s+x} in x) printf '%%s=%%s\\n' %s \"$%s\" >> %s;; esac\n", v.name, v.name, v.name, procgroup.ShellQuote(file))
			}
		case flavourPowerShell:
			value := "[string]$Env:" + v.name
			if b64 {
				value = "'" + b64Prefix + "' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes(" + value + "))"
			}
			fmt.Fprintf(&b, "if (Test-Path Env:%s) { Add-Content -Path %s -Value ('%s=' + %s) }\n", v.name, psQuote(file), v.name, value)
		case flavourPython:
			value := fmt.Sprintf("__dlite_os.environ[%q]", v.name)
			prefix := v.name + "="
			if b64 {
				value = "__dlite_b64.b64encode(" + value + ".encode()).decode()"
				prefix += b64Prefix
			}
			fmt.Fprintf(&b, "if %q in __dlite_os.environ:\n    with open(%s, 'a') as __dlite_f:\n        __dlite_f.write(%q + %s + '\\n')\n",
				v.name, strconv.QuoteToASCII(file), prefix, value)
		}
	}
	spec.Commands[0] = b.String()
	return nil
}

// psQuote quotes s for PowerShell: inside single quotes a quote is doubled.
func psQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// errLineTooLong is the failure of an output file with a line over MaxOutputLine.
var errLineTooLong = fmt.Errorf("output variable length is more than %d bytes", MaxOutputLine)

// readDotenv reads a file of KEY=value lines. A missing file has no values. Values may be quoted;
// values starting with __B64__ are base64-decoded. A line longer than MaxOutputLine is an error.
func readDotenv(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseDotenv(f)
}

func parseDotenv(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxOutputLine+2)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if len(line) > MaxOutputLine {
			return nil, errLineTooLong
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			continue
		}
		value, err := dotenvValue(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("output variable %s: %w", key, err)
		}
		out[key] = value
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return nil, errLineTooLong
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func dotenvValue(v string) (string, error) {
	if len(v) >= 2 {
		switch q := v[0]; {
		case q == '\'' && v[len(v)-1] == '\'':
			return v[1 : len(v)-1], nil
		case q == '"' && v[len(v)-1] == '"':
			return unescapeDouble(v[1 : len(v)-1]), nil
		}
	}
	if enc, ok := strings.CutPrefix(v, b64Prefix); ok {
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(enc); err != nil {
				return "", fmt.Errorf("value is not valid base64: %w", err)
			}
		}
		return string(b), nil
	}
	return v, nil
}

func unescapeDouble(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// collectOutputs reads a step's output files and keeps the variables it asked for.
func collectOutputs(spec *StepSpec, hostFiles stepFiles, res *StepResult) error {
	if len(spec.OutputVars) == 0 && len(spec.Outputs) == 0 {
		return nil
	}
	plain, err := readDotenv(hostFiles.output)
	if err != nil {
		return err
	}
	secret, err := readDotenv(hostFiles.secrets)
	if err != nil {
		return err
	}
	if len(spec.OutputVars) > 0 {
		res.OutputVars = map[string]string{}
		for _, n := range spec.OutputVars {
			if v, ok := plain[n]; ok {
				res.OutputVars[n] = v
			} else if v, ok := secret[n]; ok {
				res.OutputVars[n] = v
			}
		}
	}
	for _, o := range spec.Outputs {
		name := outputEnvName(o)
		if v, ok := secret[name]; ok {
			res.Outputs = append(res.Outputs, Output{Key: o.Key, Value: v, Type: OutputSecret})
		} else if v, ok := plain[name]; ok {
			typ := o.Type
			if typ == "" {
				typ = OutputString
			}
			res.Outputs = append(res.Outputs, Output{Key: o.Key, Value: v, Type: typ})
		}
	}
	return nil
}

// readArtifact returns the step's artifact file, when it wrote one of a sane size.
func readArtifact(file string) ([]byte, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxArtifact+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxArtifact {
		return nil, fmt.Errorf("the artifact file is larger than %d bytes", maxArtifact)
	}
	return b, nil
}
