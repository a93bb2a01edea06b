// Package selftest is booted's own test target: it installs what the
// tests need (the local hosts', the controller's and every provider's
// Debian packages), sweeps what an interrupted test run left behind, and
// runs go test, then the race detector over the packages that run fast
// and without root.
package selftest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"booted/internal/controller"
	"booted/internal/metadata"
	"booted/internal/metallab"
	"booted/internal/pkgs"
	"booted/internal/provider/registry"
	"booted/internal/settings"
	"booted/internal/testres"
)

// Run installs what the tests need (the local hosts' and the qemu
// provider's packages), then runs every test of the module with go test
// (BOOTED_TEST_ARGS), streaming its output.
func Run(ctx context.Context, out io.Writer) error {
	s, err := settings.FromEnviron()
	if err != nil {
		return err
	}
	if err := pkgs.Ensure(ctx, out, pkgs.Merge(controller.Needs, registry.Needs(), metallab.Needs, metadata.Needs, pkgs.Need{"ssh": "openssh-client", "aws": "awscli", "debconf-set-selections": "debconf"})); err != nil {
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
	if err := cmd.Run(); err != nil {
		return err
	}
	if os.Getenv(settings.TestArgs) != "" {
		return nil // a run of the caller's choosing
	}
	// The race detector over what runs without root and fast: the pure
	// packages, and the targets' orchestration on fake hosts.
	for _, args := range [][]string{
		append([]string{"test", "-race", "-count=1"}, racePackages...),
		{"test", "-race", "-count=1", "-run", "TestFake|TestSession", "./internal/targets/"},
	} {
		race := exec.CommandContext(ctx, "go", args...)
		race.Stdout, race.Stderr = out, out
		if err := race.Run(); err != nil {
			return fmt.Errorf("go test -race: %w", err)
		}
	}
	return nil
}

// racePackages run whole under the race detector by the test target.
var racePackages = []string{"./internal/config/", "./internal/inventory/", "./internal/rollout/", "./internal/fanout/",
	"./internal/settings/", "./internal/monitor/", "./internal/report/", "./internal/lb/", "./internal/provider/memory/", "./internal/provider/vbox/"}
