package selftest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"booted/internal/testutil"
)

// targetsCeiling is the most non-test lines internal/targets may have.
// Issue 26's goal is 2,000 (the target bodies alone); it was 7,953 when
// the issue was filed. Lower it as rules move to the packages that own
// them; never raise it: a new rule goes to its package, not to targets.
const targetsCeiling = 1909

// mayImportTargets are the packages that may import internal/targets
// besides magefile.go (whose build tag keeps it out of ./...): none.
var mayImportTargets = []string{}

// maySession are the packages that may import internal/session, the
// composition root: the target bodies and the daemons' entry packages.
// A service package declares the narrow port it needs instead.
var maySession = []string{"booted/internal/targets", "booted/cmd/booted-api", "booted/cmd/booted-monitor"}

// targetsProviders are the provider packages internal/targets may import:
// the registry.
var targetsProviders = []string{"booted/internal/provider/registry"}

// The layout holds: internal/targets stays the bodies of the Mage
// targets (under its ceiling), names no provider but through the
// registry, nothing below it imports it, and only it and cmd/* import the
// composition root (session).
func TestLayout_TargetsStayThin(t *testing.T) {
	testutil.RequireCommands(t, "go")
	repo := testutil.RepoRoot(t)
	// Tests count: a test of cmd/booted-api that imports targets ties the
	// binary's package to it as much as its code would.
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} | {{join .TestImports \" \"}} {{join .XTestImports \" \"}}", "./...")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pkg, imports := f[0], f[1:]
		code := imports[:slices.Index(imports, "|")] // (its tests may use the fakes' providers)
		imports = slices.DeleteFunc(imports, func(s string) bool { return s == "|" })
		if pkg == "booted/internal/targets" {
			for _, imp := range code {
				if strings.HasPrefix(imp, "booted/internal/provider/") && !slices.Contains(targetsProviders, imp) {
					t.Errorf("internal/targets imports %s: a concrete provider belongs to the package that owns its rules (metaladmin for bare metal, provider/sited for sites); targets reaches providers through the registry", imp)
				}
			}
			continue
		}
		if slices.Contains(imports, "booted/internal/session") && !slices.Contains(maySession, pkg) && pkg != "booted/internal/session" {
			t.Errorf("%s imports internal/session: only the target bodies and cmd/* may (it is the composition root); declare the port %s needs and let the session fill it", pkg, pkg)
		}
		if slices.Contains(imports, "booted/internal/targets") && !slices.Contains(mayImportTargets, pkg) {
			t.Errorf("%s imports internal/targets: only magefile.go may (it is the bodies of the Mage targets); move what %s needs into a package of its own", pkg, pkg)
		}
	}
	files, err := filepath.Glob(filepath.Join(repo, "internal", "targets", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines += bytes.Count(b, []byte("\n"))
	}
	if lines > targetsCeiling {
		t.Errorf("internal/targets has %d non-test lines, over its ceiling of %d: put the new rules in the package that owns them (README, Layout), not in the target bodies", lines, targetsCeiling)
	}
	t.Logf("internal/targets: %d non-test lines (ceiling %d, goal 2,000)", lines, targetsCeiling)
}

// The README's Layout lists every package, each above the packages it
// imports: what it says of the one-way flow is what the code does.
func TestLayout_READMEOrder(t *testing.T) {
	testutil.RequireCommands(t, "go")
	repo := testutil.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	_, block, _ := strings.Cut(after, "```\n")
	block, _, _ = strings.Cut(block, "```")
	pos := map[string]int{}
	for i, l := range strings.Split(block, "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(l, " ") && (strings.HasPrefix(f[0], "internal/") || strings.HasPrefix(f[0], "cmd/")) {
			pos["booted/"+f[0]] = i
		}
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		p, ok := pos[f[0]]
		if !ok {
			t.Errorf("%s is not in the README's Layout: add it, above the packages it imports, with what it is for", strings.TrimPrefix(f[0], "booted/"))
			continue
		}
		for _, imp := range f[1:] {
			if q, ok := pos[imp]; ok && q < p {
				t.Errorf("README Layout: %s imports %s, which is listed above it: move %s below it (imports run down the list)", strings.TrimPrefix(f[0], "booted/"), strings.TrimPrefix(imp, "booted/"), strings.TrimPrefix(imp, "booted/"))
			}
		}
	}
}
