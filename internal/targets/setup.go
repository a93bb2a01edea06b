package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// need maps a command booted runs to the Debian package that has it.
var need = []struct{ cmd, pkg string }{
	{"sshd", "openssh-server"},
	{"ssh", "openssh-client"},
	{"ssh-keygen", "openssh-client"},
	{"nginx", "nginx-light"},
	{"ip", "iproute2"},
	{"curl", "curl"},
	{"unshare", "util-linux"},
	{"setsid", "util-linux"},
}

func haveCmd(name string) bool {
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

// MissingPackages returns the Debian packages whose commands are missing.
func MissingPackages() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range need {
		if !haveCmd(n.cmd) && !seen[n.pkg] {
			seen[n.pkg] = true
			out = append(out, n.pkg)
		}
	}
	return out
}

// Setup installs the Debian packages booted needs (as root, with apt-get),
// or says exactly what to install. Services the packages ship are not
// started: booted runs its own nginx and sshd instances.
func Setup(ctx context.Context, out io.Writer) error {
	pkgs := MissingPackages()
	if len(pkgs) == 0 {
		return nil
	}
	return aptInstall(ctx, out, pkgs)
}

// aptInstall installs Debian packages as root, keeping their daemons from
// starting (booted runs its own nginx and sshd instances).
func aptInstall(ctx context.Context, out io.Writer, pkgs []string) error {
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
