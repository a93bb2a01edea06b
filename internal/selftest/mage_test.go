package selftest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"booted/internal/testutil"
)

// Ensure ten `go run mage.go` calls at once in one checkout all succeed:
// Mage's bootstrap wrote one generated main file per checkout, and calls
// removed each other's (2-4 of 10 failed).
func TestMageBootstrap_Concurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the magefile ten times")
	}
	repo := testutil.RepoRoot(t)
	root := staticProject(t)
	var wg sync.WaitGroup
	errs := make([]string, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("go", "run", "mage.go", "hosts:list", "x")
			cmd.Dir = repo
			cmd.Env = append(os.Environ(), "BOOTED_ROOT="+root)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "NAME") {
				errs[i] = fmt.Sprintf("call %d: %v: %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
	// (a call's own directory, .mage-*, goes when it ends; the test
	// target's own call is still running, so its directory is there)
	if _, err := os.Stat(filepath.Join(repo, "mage_output_file.go")); err == nil {
		t.Error("a call wrote mage_output_file.go next to the magefile")
	}
}

// Ensure a command line that is not whole is refused before anything acts:
// no target runs, nothing is created (the inventory, its key or database).
func TestMageBootstrap_RefusesBeforeActing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the magefile")
	}
	repo := testutil.RepoRoot(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	os.WriteFile(filepath.Join(root, "envs", "x.yaml"), []byte("version: 1\n"), 0o644)
	for _, tc := range []struct{ args, want string }{
		{"hosts:list x extra", `"extra" is not a target, and nothing has run`},
		{"hosts:run x echo hi there", "quote it: go run mage.go hosts:run x 'echo hi there'"},
		{"hosts:list nope", "the environments are: x"},
		{"env:startAl x", "did you mean env:startAll?"},
		{"service:deploy x hello", "service:deploy needs <version>"},
	} {
		cmd := exec.Command("go", append([]string{"run", "mage.go"}, strings.Fields(tc.args)...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "BOOTED_ROOT="+root)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("go run mage.go %s: %v: %s (want it to say %q)", tc.args, err, out, tc.want)
		}
	}
	cmd := exec.Command("go", "run", "mage.go", "hosts:list", "x")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "BOOTED_ROOT="+root, "BOOTED_PARALLEL=abc")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "BOOTED_PARALLEL=abc: use a whole number") {
		t.Errorf("BOOTED_PARALLEL=abc: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "inventory")); err == nil {
		t.Error("a refused command line created the inventory")
	}
}

// Ensure `go run mage.go` runs targets built from the sources as they are
// now: a change to a package the magefile imports (Mage's own cache key is
// the magefile alone) is in the next call, and a call with nothing changed
// builds nothing.
func TestMageBootstrap_SeesChangedPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: builds the magefile twice")
	}
	repo := testutil.RepoRoot(t)
	// safe.directory: CI's checkout may be owned by another user than
	// the one running the tests, and git then refuses to read it.
	files, err := exec.Command("git", "-c", "safe.directory=*", "-C", repo, "ls-files").Output()
	if err != nil {
		t.Fatalf("the checkout's files (git ls-files): %v", err)
	}
	mod := t.TempDir() // a copy of the module
	for _, f := range strings.Fields(string(files)) {
		b, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			continue // listed, not in the work tree
		}
		os.MkdirAll(filepath.Dir(filepath.Join(mod, f)), 0o755)
		if err := os.WriteFile(filepath.Join(mod, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := staticProject(t)
	call := func() string {
		cmd := exec.Command("go", "run", "mage.go", "hosts:list", "x")
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "BOOTED_ROOT="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go run mage.go hosts:list x: %v: %s", err, out)
		}
		return string(out)
	}
	built := func() []string {
		b, _ := filepath.Glob(filepath.Join(mod, "bin", ".mage", "booted-*"))
		return b
	}
	if out := call(); strings.Contains(out, "changed package") {
		t.Fatalf("the marker before it was written: %s", out)
	}
	first := built()
	call()
	if b := built(); len(first) != 1 || len(b) != 1 || b[0] != first[0] {
		t.Errorf("nothing changed, yet the targets were built again: %v, then %v", first, b)
	}
	os.WriteFile(filepath.Join(mod, "internal", "cli", "zz_marker.go"), []byte("package cli\n\nimport \"os\"\n\nfunc init() { os.Stderr.WriteString(\"changed package\\n\") }\n"), 0o644)
	if out := call(); !strings.Contains(out, "changed package") {
		t.Errorf("after a change to internal/cli, go run mage.go ran the old build:\n%s", out)
	}
}

// staticProject is a project root (BOOTED_ROOT) with one environment, x,
// of one static host: a target that lists it touches no machine.
func staticProject(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	os.WriteFile(filepath.Join(root, "envs", "x.yaml"), []byte(`version: 1
provider:
  type: static
  static: {known_hosts: /dev/null, hosts: [{name: a, address: 192.0.2.1}]}
roles:
  workers: {hosts: [a], min: 1, max: 1}
`), 0o644)
	return root
}
