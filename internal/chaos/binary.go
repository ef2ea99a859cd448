package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// MainPackage is the import path of the dlite command.
const MainPackage = "github.com/dlite-dev/dlite/cmd/dlite"

// Build compiles the dlite binary into dir and returns its path. With race, the binary carries
// the race detector: it then prints "WARNING: DATA RACE" on stderr when it finds one. It must run
// inside the module (any package directory of it will do), as `go test` does.
func Build(ctx context.Context, dir string, race bool) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build dlite: the go command is not on PATH: %w", err)
	}
	out := filepath.Join(dir, "dlite")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, MainPackage)
	cmd := exec.CommandContext(ctx, goTool, args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dlite: %w\n%s", err, msg)
	}
	return out, nil
}
