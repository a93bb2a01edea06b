// Package selftest is booted's own test target: it installs what the
// tests need (the local hosts', the controller's and every provider's
// Debian packages), sweeps what an interrupted test run left behind, and
// runs go test, then the race detector over the packages that run fast
// and without root.
package selftest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"booted/internal/controller"
	"booted/internal/metadata"
	"booted/internal/metallab"
	"booted/internal/pkgs"
	"booted/internal/provider/registry"
	"booted/internal/service"
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
	need := Needs()
	if err := pkgs.Ensure(ctx, out, need); err != nil {
		return err
	}
	if err := pkgs.Verify(need); err != nil {
		return err
	}
	fmt.Fprintf(out, "--- every declared file and command is here (%d, from %d Debian packages)\n", len(need), len(slices.Compact(slices.Sorted(maps.Values(need)))))
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
	if os.Getenv(settings.TestArgs) != "" { // a run of the caller's choosing
		cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, s.TestArgs...)...)
		cmd.Stdout, cmd.Stderr = out, out
		return cmd.Run()
	}
	start := time.Now()
	testres.ResetHolderLog("cpu")
	// The race detector over raceBeside, beside the main pass: their tests
	// mostly wait (NATS clusters, ack waits, killed conductors) rather
	// than compute, and at the end they were the race pass's long pole.
	var besideOut bytes.Buffer
	beside := exec.CommandContext(ctx, "go", append([]string{"test", "-race", "-count=1"}, raceBeside...)...)
	beside.Stdout, beside.Stderr = &besideOut, &besideOut
	if err := beside.Start(); err != nil {
		return err
	}
	err = runSplit(ctx, out)
	besideErr := beside.Wait()
	fmt.Fprintf(out, "--- go test took %s; the tests that took the machine's CPU lock (one at a time):\n%s", time.Since(start).Round(time.Second), testres.HolderLog("cpu"))
	fmt.Fprintf(out, "--- the race detector beside it, over %s:\n", strings.Join(raceBeside, " "))
	out.Write(besideOut.Bytes())
	if err != nil {
		return err
	}
	if besideErr != nil {
		return fmt.Errorf("go test -race: %w", besideErr)
	}
	start = time.Now()
	defer func() {
		fmt.Fprintf(out, "--- the race detector's pass took %s\n", time.Since(start).Round(time.Second))
	}()
	// The race detector over what runs without root and fast: the pure
	// packages, and the targets' orchestration on fake hosts. After the
	// rest, not beside it: starved of CPU beside the emulated machines, the
	// inventory's concurrent-writers test ran past SQLite's busy timeout.
	// Its two go tests at once (the cores are free by now), each one's
	// output kept whole.
	var outs [2]bytes.Buffer
	errs := make(chan error, 2)
	var after []string
	for _, p := range racePackages {
		if !slices.Contains(raceBeside, p) {
			after = append(after, p)
		}
	}
	for i, args := range [][]string{
		append([]string{"test", "-race", "-count=1"}, after...),
		{"test", "-race", "-count=1", "-run", raceTests, "./internal/targets/"},
	} {
		race := exec.CommandContext(ctx, "go", args...)
		race.Stdout, race.Stderr = &outs[i], &outs[i]
		go func() { errs <- race.Run() }()
	}
	err = errors.Join(<-errs, <-errs)
	out.Write(outs[0].Bytes())
	out.Write(outs[1].Bytes())
	if err != nil {
		return fmt.Errorf("go test -race: %w", err)
	}
	return nil
}

// Needs is every file and command booted and its tests use on this
// machine, each with the Debian package that ships it: what the test
// target installs, and what TestNeeds_EveryOneDeclared holds the code to.
func Needs() pkgs.Need {
	return pkgs.Merge(pkgs.Needs, controller.Needs, registry.Needs(), metallab.Needs, metadata.Needs, service.Needs, testNeeds)
}

// testNeeds are what the tests themselves run or read: the real clients
// and validators they check booted's outputs with.
var testNeeds = pkgs.Need{
	"ssh": "openssh-client", "ssh-keygen": "openssh-client", "curl": "curl", "git": "git",
	"/usr/bin/aws": "awscli", "/usr/bin/python3": "python3", "/usr/lib/python3/dist-packages/boto3/__init__.py": "python3-boto3",
	"debconf-set-selections": "debconf", "xmllint": "libxml2-utils", "promtool": "prometheus", "chromium": "chromium",
	"nats-server": "nats-server", "xorriso": "xorriso", "setpriv": "util-linux", "nsenter": "util-linux",
	"ping": "iputils-ping", "kill": "procps", "grep": "grep", "cp": "coreutils", "sh": "dash",
	"/bin/true": "coreutils", "/etc/passwd": "base-passwd",
}

// racePackages run whole under the race detector by the test target.
var racePackages = []string{"./internal/config/", "./internal/inventory/", "./internal/rollout/", "./internal/fanout/",
	"./internal/settings/", "./internal/monitor/", "./internal/report/", "./internal/lb/", "./internal/provider/memory/", "./internal/provider/vbox/", "./internal/conductor/"}

// raceBeside are the racePackages whose race pass runs beside the main
// pass, not after it.
var raceBeside = []string{"./internal/conductor/"}

// raceTests are the targets' tests the race pass runs (their
// orchestration on fake hosts); the main pass skips them.
const raceTests = "^TestFake|^TestSession"

// long is the test that takes the longest by far (emulated bare-metal
// machines installed under TCG, several minutes): it runs in a go test of
// its own, beside the rest, so that the suite's wall time is not the sum.
const long = "^TestMetal_DeployStagesAndPowerCycle$"

// runSplit runs every test: the long one in one go test, the others in
// another, at once; the long one's output follows the others'.
func runSplit(ctx context.Context, out io.Writer) error {
	var longOut bytes.Buffer
	longCmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout", "30m", "-run", long, "./internal/targets/")
	longCmd.Stdout, longCmd.Stderr = &longOut, &longOut
	if err := longCmd.Start(); err != nil {
		return err
	}
	// -p 4: go test runs as many packages at once as there are cores (2
	// here), and the packages whose tests wait for the CPU lock (qemu and
	// bare-metal conformance, ~5 min behind the long test) held both
	// slots while idle, so the targets package started only after them.
	// What the race pass runs (racePackages whole, raceTests of the
	// targets) is left to it: run twice, it only added CPU beside the long
	// test's TCG machines, which set the suite's pace.
	pkgs, err := exec.CommandContext(ctx, "go", "list", "./...").Output()
	if err != nil {
		return fmt.Errorf("go list ./...: %w", err)
	}
	args := []string{"test", "-count=1", "-p", "4", "-timeout", "30m", "-skip", long + "|" + raceTests}
	for _, p := range strings.Fields(string(pkgs)) {
		if !slices.Contains(racePackages, "./"+strings.TrimPrefix(p, "booted/")+"/") {
			args = append(args, p)
		}
	}
	rest := exec.CommandContext(ctx, "go", args...)
	rest.Stdout, rest.Stderr = out, out
	restErr := rest.Run()
	longErr := longCmd.Wait()
	fmt.Fprintf(out, "--- %s (run beside the others):\n", long)
	out.Write(longOut.Bytes())
	if restErr != nil {
		return restErr
	}
	if longErr != nil {
		return fmt.Errorf("%s: %w", long, longErr)
	}
	return nil
}
