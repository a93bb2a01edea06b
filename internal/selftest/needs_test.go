package selftest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"booted/internal/testutil"
)

// systemPath is a path in the machine's own directories: a file a
// package may ship.
var systemPath = regexp.MustCompile(`^/(usr|lib|lib64|bin|sbin|etc|opt|var|run|srv|boot)/`)

// notFromAPackage are the system paths in the code that no package ships,
// each with why: booted's own files and directories (on this machine or
// on its hosts), run-time directories, test fixtures.
var notFromAPackage = map[string]string{
	"/etc/booted":                       "booted's own directory on a host",
	"/opt/":                             "booted's and the tests' files on hosts (/opt/booted, /opt/app.conf)",
	"/var/log/booted/":                  "services' logs on a host",
	"/var/cache/booted/":                "booted's caches (qemu images, the fresh check's Debian root)",
	"/var/tmp":                          "the machine's temporary directory (the fresh check's root)",
	"/usr/local/share/ca-certificates/": "the machine's own authorities, copied into the fresh root where there are any",
	"/run/":                             "run-time directories and pid files (netns, sshd, locks)",
	"/srv/":                             "paths of a test's example env files",
	"/usr/local/bin":                    "where install puts booted",
	"/usr/sbin/policy-rc.d":             "written by pkgs.Ensure to keep packages' daemons from starting",
	"/usr/bin":                          "a directory of PATH",
	"/usr/sbin":                         "a directory of PATH",
	"/etc/resolv.conf":                  "the machine's resolver, copied into the qemu image when there is one",
	"/etc/ssh/ssh_host_ed25519_key":     "a host's key, read on the host",
}

func owned(p string) bool {
	for k := range notFromAPackage {
		if p == k || strings.HasSuffix(k, "/") && strings.HasPrefix(p, k) || strings.HasPrefix(p, k+"/") || strings.HasPrefix(p, k+".") {
			return true
		}
	}
	return false
}

// Ensure every file and command the code (tests included) uses from the
// system is declared, with the Debian package that ships it, in Needs:
// the test target installs them and checks each is there, so a file a
// package only recommends (syslinux-common's mbr.bin) cannot be missing
// on a fresh machine while CI on a developer's machine passes. Read from
// the source: every string literal that is a system path, and every
// command exec.Command and exec.CommandContext are given by name.
func TestNeeds_EveryOneDeclared(t *testing.T) {
	need := Needs()
	repo := testutil.RepoRoot(t)
	seen := 0
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repo && (d.Name() == "testdata" || d.Name() == "bin" || d.Name() == "inventory" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		where := func(n ast.Node) string {
			pos := fset.Position(n.Pos())
			rel, _ := filepath.Rel(repo, pos.Filename)
			return rel + ":" + strconv.Itoa(pos.Line)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); n.Kind == token.STRING && err == nil && systemPath.MatchString(s) && !owned(s) {
					seen++
					if _, ok := need[s]; !ok {
						t.Errorf("%s: %s is used but no Needs declares it: add it, with the Debian package that ships it (dpkg -S %s), to the Needs of the package that uses it", where(n), s, s)
					}
					// In CI the test target has installed every need: a
					// file the code names is there (on a fresh machine
					// too: testFresh runs this test in its root).
					if _, err := os.Stat(s); err != nil && testutil.InCI() {
						t.Errorf("%s: %s is not on this machine after the test target's installs: %v", where(n), s, err)
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "exec" || sel.Sel.Name != "Command" && sel.Sel.Name != "CommandContext" {
					return true
				}
				i := 0
				if sel.Sel.Name == "CommandContext" {
					i = 1
				}
				if len(n.Args) <= i {
					return true
				}
				lit, ok := n.Args[i].(*ast.BasicLit)
				if !ok {
					return true
				}
				name, _ := strconv.Unquote(lit.Value)
				if name == "go" { // the toolchain the README's commands run with
					return true
				}
				seen++
				if _, ok := need[name]; !ok {
					t.Errorf("%s: runs %s, which no Needs declares: add it, with the Debian package that ships it, to the Needs of the package that runs it", where(n), name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 50 { // the scan itself broke (it found 150 when written)
		t.Fatalf("found only %d uses of system files and commands in the source", seen)
	}
	// Each declared package is a real Debian package name.
	for k, pkg := range need {
		if !regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`).MatchString(pkg) {
			t.Errorf("need %s: %q is not a Debian package name", k, pkg)
		}
	}
}
