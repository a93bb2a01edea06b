// Package selftest is booted's own test target: it installs what the
// tests need (the local hosts', the controller's and every provider's
// Debian packages), sweeps what an interrupted test run left behind, and
// runs go test, then the race detector over the packages that run fast
// and without root.
package selftest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"booted/internal/bench"
	"booted/internal/controller"
	"booted/internal/freshcheck"
	"booted/internal/metadata"
	"booted/internal/metallab"
	"booted/internal/pgtest"
	"booted/internal/pkgs"
	"booted/internal/provider/registry"
	"booted/internal/service"
	"booted/internal/settings"
	"booted/internal/testres"
)

// Install installs what the tests need (as root, with apt-get) and checks
// that every declared file and command is there; it runs no test.
func Install(ctx context.Context, out io.Writer) error {
	need := Needs()
	if err := pkgs.Ensure(ctx, out, need); err != nil {
		return err
	}
	if err := pkgs.Verify(need); err != nil {
		return err
	}
	fmt.Fprintf(out, "--- every declared file and command is here (%d, from %d Debian packages)\n", len(need), len(slices.Compact(slices.Sorted(maps.Values(need)))))
	return nil
}

// Run installs what the tests need (Install), then runs every test of the
// module (passes), printing each package's result as it ends and, last,
// the table of what ran; in CI a skip that is not by design fails the
// run. BOOTED_TEST_ARGS runs go test with those arguments instead.
func Run(ctx context.Context, out io.Writer) error {
	s, err := settings.FromEnviron()
	if err != nil {
		return err
	}
	if err := Install(ctx, out); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if n := testres.Sweep(); n > 0 {
			fmt.Fprintf(out, "removed %d namespaces, bridges and nginx left by an interrupted test run\n", n)
		}
	}
	if os.Getenv(settings.TestArgs) != "" { // a run of the caller's choosing
		cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, s.TestArgs...)...)
		cmd.Stdout, cmd.Stderr = out, out
		return cmd.Run()
	}
	rep := newReport(out)
	err = passes(ctx, out, rep)
	fmt.Fprintln(out, "--- what ran:")
	passed, failed, skipped, na := rep.table(out)
	fmt.Fprintf(out, "%d cases not applicable to their subject (listed above as n/a)\n", na)
	fmt.Fprintf(out, "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if err != nil {
		return err
	}
	if skips := rep.skippedTests(); len(skips) > 0 && inCI() {
		return fmt.Errorf("CI runs every test, and %d skipped (give CI what each needs, or make it run): %s", len(skips), strings.Join(skips, "; "))
	}
	return nil
}

// passes runs the tests: services/hello's, then every test of the module
// (the long one beside the rest), the race detector over the packages
// that run fast, and each fuzz target over fuzzTime inputs.
func passes(ctx context.Context, out io.Writer, rep *report) error {
	// services/hello is a module of its own: its tests first.
	if err := rep.run(ctx, "main", "services/hello", "-count=1", "./..."); err != nil {
		return fmt.Errorf("services/hello tests: %w", err)
	}
	start := time.Now()
	testres.ResetHolderLog("cpu")
	// The race detector over raceBeside, beside the main pass: their tests
	// mostly wait (NATS clusters, ack waits, killed conductors) rather
	// than compute, and at the end they were the race pass's long pole.
	besideErr := make(chan error, 1)
	go func() {
		besideErr <- rep.run(ctx, "race", "", append([]string{"-race", "-count=1", "-timeout", raceTimeout}, raceBeside...)...)
	}()
	err := runSplit(ctx, rep)
	berr := <-besideErr
	fmt.Fprintf(out, "--- go test took %s; the tests that took the machine's CPU lock (one at a time):\n%s", time.Since(start).Round(time.Second), testres.HolderLog("cpu"))
	if err != nil {
		return err
	}
	if berr != nil {
		return fmt.Errorf("go test -race %s: %w", strings.Join(raceBeside, " "), berr)
	}
	start = time.Now()
	// The race detector, in addition to the main pass, over what runs
	// without root and fast: the pure packages, and the targets'
	// orchestration on fake hosts. After the rest, not beside it: starved
	// of CPU beside the emulated machines, the inventory's
	// concurrent-writers test ran past SQLite's busy timeout. Its two go
	// tests at once (the cores are free by now).
	var after []string
	for _, p := range racePackages {
		if !slices.Contains(raceBeside, p) {
			after = append(after, p)
		}
	}
	errs := make(chan error, 2)
	for _, args := range [][]string{
		append([]string{"-race", "-count=1", "-timeout", raceTimeout}, after...),
		{"-race", "-count=1", "-timeout", raceTimeout, "-run", raceTests, "./internal/targets/"},
	} {
		go func() { errs <- rep.run(ctx, "race", "", args...) }()
	}
	err = errors.Join(<-errs, <-errs)
	fmt.Fprintf(out, "--- the race detector's pass took %s\n", time.Since(start).Round(time.Second))
	if err != nil {
		return fmt.Errorf("go test -race: %w", err)
	}
	return fuzz(ctx, out, rep)
}

// Needs is every file and command booted and its tests use on this
// machine, each with the Debian package that ships it: what the test
// target installs, and what TestNeeds_EveryOneDeclared holds the code to.
func Needs() pkgs.Need {
	return pkgs.Merge(pkgs.Needs, controller.Needs, registry.Needs(), metallab.Needs, metadata.Needs, service.Needs, freshcheck.Needs, bench.ListNeeds, testNeeds)
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
	// the inventory's tests on PostgreSQL (pgtest.Server)
	pgtest.Server: pgtest.Package, "mount": "mount", "chroot": "coreutils",
}

// racePackages run whole under the race detector by the test target.
var racePackages = []string{"./internal/config/", "./internal/inventory/", "./internal/rollout/", "./internal/fanout/",
	"./internal/settings/", "./internal/monitor/", "./internal/report/", "./internal/lb/", "./internal/provider/memory/", "./internal/provider/vbox/", "./internal/conductor/",
	"./internal/ec2backend/", "./internal/hostquery/", "./internal/lifecycle/", "./internal/hostops/", "./internal/restbackend/",
	"./internal/apiserver/", "./internal/metaladmin/", "./internal/provider/sited/", "./internal/conductord/",
	"./internal/jobs/", "./internal/sitedio/", "./internal/deploy/", "./internal/session/", "./internal/transfer/"}

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

// scaleTests are the tests too long for the main suite (1,000 local
// hosts: minutes to boot): the testScale target runs them, after it in CI.
const scaleTests = "^TestScale_"

// Scale runs the scale tests (scaleTests) and prints the table of what
// ran; in CI a skipped one fails it, as in Run.
func Scale(ctx context.Context, out io.Writer) error {
	if err := Install(ctx, out); err != nil {
		return err
	}
	rep := newReport(out)
	err := rep.run(ctx, "scale", "", "-count=1", "-timeout", "40m", "-run", scaleTests, "./...")
	fmt.Fprintln(out, "--- what ran:")
	passed, failed, skipped, _ := rep.table(out)
	fmt.Fprintf(out, "scale tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if err != nil {
		return err
	}
	if passed == 0 {
		return errors.New("no scale test ran")
	}
	if skips := rep.skippedTests(); len(skips) > 0 && inCI() {
		return fmt.Errorf("CI runs every test, and %d skipped: %s", len(skips), strings.Join(skips, "; "))
	}
	return nil
}

// runSplit runs every test: the long one in one go test, the others in
// another, at once.
func runSplit(ctx context.Context, rep *report) error {
	longErr := make(chan error, 1)
	go func() {
		longErr <- rep.run(ctx, "main", "", "-count=1", "-timeout", "30m", "-run", long, "./internal/targets/")
	}()
	// -p 4: go test runs as many packages at once as there are cores (2
	// here), and the packages whose tests wait for the CPU lock (qemu and
	// bare-metal conformance, ~5 min behind the long test) held both
	// slots while idle, so the targets package started only after them.
	restErr := rep.run(ctx, "main", "", "-count=1", "-p", "4", "-timeout", "30m", "-skip", long+"|"+scaleTests, "./...")
	lerr := <-longErr
	if restErr != nil {
		return fmt.Errorf("go test: %w", restErr)
	}
	if lerr != nil {
		return fmt.Errorf("%s: %w", long, lerr)
	}
	return nil
}

// raceTimeout bounds each go test of the race pass.
const raceTimeout = "20m"

// fuzzTime is how many inputs each fuzz target tries in a run of the test
// target: about 12 s for the slowest targets here (bootlog and ec2api, at
// 15,000-18,000 a second on 2 cores), 2-4 s for the others. A count, not a
// duration: go1.26's fuzzing coordinator can fail a target with "context
// deadline exceeded" and no failing input when a -fuzztime duration ends
// while a worker is busy (go.dev/issue/75804, fixed in go1.27); a count has
// no deadline to race. It failed CI once that way (query's FuzzParse).
const fuzzTime = "200000x"

// fuzz runs each fuzz target of the module for fuzzTime, and keeps what it
// found new (go's fuzzing cache) in the package's testdata/fuzz, where
// every later go test runs it as a seed.
func fuzz(ctx context.Context, out io.Writer, rep *report) error {
	list, err := exec.CommandContext(ctx, "go", "test", "-list", "^Fuzz", "./...").Output()
	if err != nil {
		return fmt.Errorf("go test -list ^Fuzz ./...: %w", err)
	}
	cache, err := exec.CommandContext(ctx, "go", "env", "GOCACHE").Output()
	if err != nil {
		return fmt.Errorf("go env GOCACHE: %w", err)
	}
	var names []string
	for _, l := range strings.Split(string(list), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Fuzz"):
			names = append(names, f[0])
		case len(f) >= 2 && f[0] == "ok":
			for _, name := range names {
				if err := rep.run(ctx, "fuzz", "", "-run", "^$", "-fuzz", "^"+name+"$", "-fuzztime", fuzzTime, f[1]); err != nil {
					return fmt.Errorf("fuzzing %s %s: %w (go test writes a failing input it found to the package's testdata/fuzz/%s)", f[1], name, err, name)
				}
				if n, err := keepCorpus(ctx, strings.TrimSpace(string(cache)), f[1], name); err != nil {
					return err
				} else if n > 0 {
					fmt.Fprintf(out, "fuzz: %s %s found %d new inputs, kept in its testdata/fuzz/%s\n", f[1], name, n, name)
				}
			}
			names = nil
		}
	}
	return nil
}

// keepCorpus copies the inputs fuzzing found for pkg's fuzz target name
// from go's cache into the package's testdata/fuzz/NAME (at most 30 a
// target: a regression corpus, run as seeds by every go test, not the
// fuzzer's whole cache); it returns how many were new.
func keepCorpus(ctx context.Context, cache, pkg, name string) (int, error) {
	dir, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.Dir}}", pkg).Output()
	if err != nil {
		return 0, fmt.Errorf("go list %s: %w", pkg, err)
	}
	from := filepath.Join(cache, "fuzz", pkg, name)
	to := filepath.Join(strings.TrimSpace(string(dir)), "testdata", "fuzz", name)
	found, _ := os.ReadDir(from)
	kept, _ := os.ReadDir(to)
	n := 0
	for _, f := range found {
		if len(kept)+n >= 30 {
			break
		}
		dst := filepath.Join(to, f.Name())
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, f.Name()))
		if err != nil {
			return n, err
		}
		if err := os.MkdirAll(to, 0o755); err != nil {
			return n, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// inCI: CI sets CI (testutil.InCI says the same to the tests).
func inCI() bool { return os.Getenv("CI") != "" }
