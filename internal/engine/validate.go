package engine

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/dlite-dev/dlite/internal/procgroup"
)

// maxStepID bounds a step id; ids name containers and files.
const maxStepID = 256

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// validateStage checks a stage spec before anything is created for it.
func (e *Engine) validateStage(spec *StageSpec) error {
	if spec.ID == "" {
		return invalidf("the stage has no id")
	}
	if strings.ContainsRune(spec.ID, 0) {
		return invalidf("the stage id contains a NUL byte")
	}
	if err := validateEnv("stage env", spec.Env); err != nil {
		return err
	}
	if err := validateWorkspacePath(spec.WorkspacePath); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, v := range spec.Volumes {
		switch {
		case v.Name == "":
			return invalidf("volume %d has no name", i)
		case names[v.Name]:
			return invalidf("volume name %q is used twice", v.Name)
		case (v.Temp == nil) == (v.Host == nil):
			return invalidf("volume %q must be either a temp or a host volume", v.Name)
		case v.Host != nil && !filepath.IsAbs(v.Host.Path):
			return invalidf("host volume %q: path %q is not absolute", v.Name, v.Host.Path)
		case v.Host != nil && filepath.Clean(v.Host.Path) == "/":
			return invalidf("host volume %q: the root directory cannot be a volume", v.Name)
		}
		names[v.Name] = true
	}
	if err := validateFiles("stage", spec.Files); err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, svc := range spec.Services {
		if err := validateStepShape(&svc); err != nil {
			return fmt.Errorf("service: %w", err)
		}
		if ids[svc.ID] {
			return invalidf("service id %q is used twice", svc.ID)
		}
		ids[svc.ID] = true
	}
	if e.opts.Logs != nil {
		if _, _, err := e.opts.Logs.Transport(spec.Logs); err != nil {
			return invalidf("log config: %v", err)
		}
	}
	return nil
}

// validateWorkspacePath checks where a stage asks its container steps to see the workspace: a
// clean absolute path that is not the root and neither holds nor lies in ContainerShared, which
// is mounted beside it.
func validateWorkspacePath(p string) error {
	switch {
	case p == "":
		return nil
	case strings.ContainsRune(p, 0) || !path.IsAbs(p) || path.Clean(p) != p:
		return invalidf("workspace path %q is not a clean absolute path", p)
	case p == "/":
		return invalidf("the root directory cannot be the workspace path")
	case nested(p, ContainerShared):
		return invalidf("workspace path %q overlaps %s, where steps find the stage's shared files", p, ContainerShared)
	}
	return nil
}

// nested reports whether one of two clean absolute paths is the other or lies in it.
func nested(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// validateStep checks a step against its stage.
func validateStep(st *Stage, spec *StepSpec) error {
	if err := validateStepShape(spec); err != nil {
		return err
	}
	for _, m := range spec.Volumes {
		found := false
		for _, v := range st.Spec.Volumes {
			found = found || v.Name == m.Name
		}
		if !found {
			return invalidf("step %s mounts volume %q, which the stage does not have", spec.ID, m.Name)
		}
		if !filepath.IsAbs(m.Path) {
			return invalidf("step %s mounts volume %q at %q, which is not an absolute path", spec.ID, m.Name, m.Path)
		}
	}
	return nil
}

// validateStepShape checks what a step spec must hold whatever its stage.
func validateStepShape(spec *StepSpec) error {
	switch {
	case spec.ID == "":
		return invalidf("the step has no id")
	case len(spec.ID) > maxStepID:
		return invalidf("step id %.32q... is longer than %d bytes", spec.ID, maxStepID)
	case strings.ContainsRune(spec.ID, 0):
		return invalidf("the step id contains a NUL byte")
	case spec.Timeout < 0:
		return invalidf("step %s has a negative timeout", spec.ID)
	}
	if err := validateEnv("step "+spec.ID+" env", spec.Env); err != nil {
		return err
	}
	if err := validateFiles("step "+spec.ID, spec.Files); err != nil {
		return err
	}
	for _, n := range spec.OutputVars {
		if !procgroup.IsVariableName(n) {
			return invalidf("step %s: output variable %q is not a variable name", spec.ID, n)
		}
	}
	for _, o := range spec.Outputs {
		if o.Key == "" {
			return invalidf("step %s: an output has no key", spec.ID)
		}
		if n := outputEnvName(o); !procgroup.IsVariableName(n) {
			return invalidf("step %s: output %q names %q, which is not a variable name", spec.ID, o.Key, n)
		}
		if o.Type != "" && o.Type != OutputString && o.Type != OutputSecret {
			return invalidf("step %s: output %q has type %q, not STRING or SECRET", spec.ID, o.Key, o.Type)
		}
	}
	if strings.ContainsRune(spec.WorkingDir, 0) {
		return invalidf("step %s: the working directory contains a NUL byte", spec.ID)
	}
	return nil
}

func validateEnv(what string, env map[string]string) error {
	for name, value := range env {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return invalidf("%s: %q is not a valid variable name", what, name)
		}
		if strings.ContainsRune(value, 0) {
			return invalidf("%s: the value of %s contains a NUL byte", what, name)
		}
	}
	return nil
}

func validateFiles(what string, files []File) error {
	for _, f := range files {
		if !filepath.IsAbs(f.Path) || strings.ContainsRune(f.Path, 0) {
			return invalidf("%s file %q is not an absolute path", what, f.Path)
		}
		if filepath.Clean(f.Path) == "/" {
			return invalidf("%s file: the root directory cannot be a file", what)
		}
	}
	return nil
}
