package targets

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"booted/internal/atomicfile"
	"booted/internal/shell"
)

// Install compiles every target into one command (Mage's -compile, into
// ROOT/bin/booted) and writes BOOTED_BIN_DIR/booted, a script that runs it
// with this project as BOOTED_ROOT (unless the caller sets one), so that
// `booted TARGET …` works from any directory and costs milliseconds, not
// `go run mage.go`'s build of the magefile at every call. The compiled
// command does not follow the code: install again after changing it.
func (r *Runner) Install(ctx context.Context) error {
	root, err := filepath.Abs(r.Root)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "mage.go")); err != nil {
		return fmt.Errorf("install: %s is not booted's project directory (no mage.go): run it there, or set BOOTED_ROOT", root)
	}
	bin := filepath.Join(root, "bin", "booted")
	cmd := exec.CommandContext(ctx, "go", "run", "mage.go", "-compile", bin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install: go run mage.go -compile %s: %v: %s", bin, err, strings.TrimSpace(string(out)))
	}
	if err := os.MkdirAll(r.BinDir, 0o755); err != nil {
		return fmt.Errorf("install: %w (BOOTED_BIN_DIR chooses another directory)", err)
	}
	wrapper := fmt.Sprintf(`#!/bin/sh
# booted, compiled from %[1]s by its install target (install again after changing the code).
if [ -z "${BOOTED_ROOT:-}" ]; then BOOTED_ROOT=%[2]s; export BOOTED_ROOT; fi
exec %[3]s "$@"
`, root, shell.Quote(root), shell.Quote(bin))
	dst := filepath.Join(r.BinDir, "booted")
	if err := atomicfile.Write(dst, []byte(wrapper), 0o755); err != nil {
		return fmt.Errorf("install: %w (BOOTED_BIN_DIR chooses another directory)", err)
	}
	onPath := false
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		onPath = onPath || d == r.BinDir
	}
	fmt.Fprintf(r.Out, "installed %s (every target, compiled into %s); `booted -l` lists them, `booted -h TARGET` explains one\n", dst, bin)
	if !onPath {
		fmt.Fprintf(r.Out, "%s is not on your PATH: export PATH=%s:$PATH\n", r.BinDir, shell.Quote(r.BinDir))
	}
	return nil
}
