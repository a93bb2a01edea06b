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
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "envs"), 0o755)
	os.WriteFile(filepath.Join(root, "envs", "x.yaml"), []byte(`version: 1
provider:
  type: static
  static: {known_hosts: /dev/null, hosts: [{name: a, address: 192.0.2.1}]}
roles:
  workers: {hosts: [a], min: 1, max: 1}
`), 0o644)
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
