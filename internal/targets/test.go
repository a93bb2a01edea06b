package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"booted/internal/testres"
)

// qemuPackages maps the commands the qemu provider runs to their packages.
var qemuPackages = map[string]string{"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs"}

// Test installs what the tests need (as Setup does), then runs every test
// of the module with go test, streaming its output.
func Test(ctx context.Context, out io.Writer) error {
	if err := Setup(ctx, out); err != nil {
		return err
	}
	// The qemu provider's tests build an image and boot a VM.
	if err := installIfMissing(ctx, &Runner{Err: out}, qemuPackages); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if n := testres.Sweep(); n > 0 {
			fmt.Fprintf(out, "removed %d namespaces, bridges and nginx left by an interrupted test run\n", n)
		}
	}
	args := []string{"test", "-count=1", "-timeout", "30m", "./..."}
	if v := os.Getenv("BOOTED_TEST_ARGS"); v != "" {
		args = append([]string{"test"}, strings.Fields(v)...)
	}
	// services/hello is a module of its own: its tests first.
	hello := exec.CommandContext(ctx, "go", "test", "-count=1", "./...")
	hello.Dir = "services/hello"
	hello.Stdout, hello.Stderr = out, out
	if err := hello.Run(); err != nil {
		return fmt.Errorf("services/hello tests: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}
