package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"booted/internal/controller"
	"booted/internal/pkgs"
	"booted/internal/provider/local"
	"booted/internal/provider/qemu"
	"booted/internal/settings"
	"booted/internal/testres"
)

// Setup installs the Debian packages the default local environment needs
// (as root, with apt-get), or says exactly what to install.
func Setup(ctx context.Context, out io.Writer) error {
	return pkgs.Ensure(ctx, out, pkgs.Merge(controller.Needs, local.Needs, pkgs.Need{"ssh": "openssh-client"}))
}

// Test installs what the tests need (the local hosts' and the qemu
// provider's packages), then runs every test of the module with go test
// (BOOTED_TEST_ARGS), streaming its output.
func Test(ctx context.Context, out io.Writer) error {
	s, err := settings.FromEnviron()
	if err != nil {
		return err
	}
	if err := pkgs.Ensure(ctx, out, pkgs.Merge(controller.Needs, local.Needs, qemu.Needs, pkgs.Need{"ssh": "openssh-client"})); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if n := testres.Sweep(); n > 0 {
			fmt.Fprintf(out, "removed %d namespaces, bridges and nginx left by an interrupted test run\n", n)
		}
	}
	// services/hello is a module of its own: its tests first.
	hello := exec.CommandContext(ctx, "go", "test", "-count=1", "./...")
	hello.Dir = "services/hello"
	hello.Stdout, hello.Stderr = out, out
	if err := hello.Run(); err != nil {
		return fmt.Errorf("services/hello tests: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, s.TestArgs...)...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
