// Package pkgs installs the Debian packages booted's parts need (as root,
// with apt-get), or says exactly what to install. Each part lists what it
// needs as command → package; services the packages ship are not started:
// booted runs its own nginx and sshd instances.
package pkgs

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Need maps commands to the Debian packages that have them. A key that is
// an absolute path names a file of the package instead (Debian's own
// /usr/bin/aws where pip's is first on PATH; a Python module).
type Need map[string]string

// Needs is what Ensure runs itself.
var Needs = Need{"apt-get": "apt"}

// Merge returns the union of needs.
func Merge(needs ...Need) Need {
	out := Need{}
	for _, n := range needs {
		maps.Copy(out, n)
	}
	return out
}

// Have reports whether command name is installed (on PATH or in the
// system directories, which root's PATH may lack), or, for an absolute
// path, whether that file exists.
func Have(name string) bool {
	if filepath.IsAbs(name) {
		st, err := os.Stat(name)
		return err == nil && !st.IsDir()
	}
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if st, err := os.Stat(d + "/" + name); err == nil && !st.IsDir() {
			return true
		}
	}
	return false
}

// Missing returns the packages of need whose commands are missing, sorted.
func Missing(need Need) []string {
	seen := map[string]bool{}
	for cmd, pkg := range need {
		if !Have(cmd) {
			seen[pkg] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Ensure installs the packages of need whose commands are missing,
// writing apt-get's output to out.
func Ensure(ctx context.Context, out io.Writer, need Need) error {
	pkgs := Missing(need)
	if len(pkgs) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("booted needs these Debian packages: run as root, or install them with: sudo apt-get install %s", strings.Join(pkgs, " "))
	}
	fmt.Fprintf(out, "installing %s with apt-get\n", strings.Join(pkgs, " "))
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		// Keep the packages' own daemons (a system nginx on :80, sshd on :22) from starting.
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policy)
		}
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	if err := run("update", "-qq"); err != nil {
		return err
	}
	return run(append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)...)
}

// Verify says which needs are still missing (after Ensure): a file or
// command the code uses that the package named for it did not bring means
// the need names the wrong package (or a package that only recommends the
// one that has it, as syslinux does syslinux-common).
func Verify(need Need) error {
	var missing []string
	for _, k := range slices.Sorted(maps.Keys(need)) {
		if !Have(k) {
			missing = append(missing, fmt.Sprintf("%s (declared as Debian's %s)", k, need[k]))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing after the install: %s: install the package that ships each (dpkg -S, apt-file search), and name it in the Needs of the package that uses it", strings.Join(missing, ", "))
}
