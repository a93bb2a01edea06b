package service

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/testutil"
)

func TestLoad_Hello(t *testing.T) {
	d, err := Load(testutil.RepoRoot(t), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if d.Port != 8080 || d.Keep != 3 || len(d.Checks) != 4 || d.Path != "services/hello" {
		t.Errorf("hello: %+v", d)
	}
}

func TestLoad_Errors(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "services", "svc")
	os.MkdirAll(dir, 0o755)
	for name, tc := range map[string]struct{ body, want string }{
		"Unknown field": {"name: svc\nport: 1\nbuild: b\nstart: s\nprot: 2\n", "field prot not found"},
		"Bad port":      {"name: svc\nport: 0\nbuild: b\nstart: s\n", "port: 0 is not a TCP port"},
		"No build":      {"name: svc\nport: 80\nstart: s\n", "build: missing"},
		"Wrong name":    {"name: other\nport: 80\nbuild: b\nstart: s\n", `name: "other" must be the directory's name`},
		"Keep one":      {"name: svc\nport: 80\nbuild: b\nstart: s\nkeep: 1\n", "keep at least 2"},
		"Bad check":     {"name: svc\nport: 80\nbuild: b\nstart: s\nchecks: [{name: x}]\n", "checks[0]: a check needs"},
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(filepath.Join(dir, "service.yaml"), []byte(tc.body), 0o644)
			_, err := Load(root, "svc")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "service.yaml") {
				t.Errorf("err = %v, want %q naming the file", err, tc.want)
			}
		})
	}
	if _, err := Load(root, "nope"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing service: %v", err)
	}
}

func TestUnit_Golden(t *testing.T) {
	d, err := Load(testutil.RepoRoot(t), "hello")
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Unit()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, filepath.Join("testdata", "booted-hello.service.golden"), []byte(got))
}

// Ensure a version is built once from exactly its commit, cached, and that
// an unknown version fails before building.
func TestBuild_VersionsAndCache(t *testing.T) {
	testutil.RequireCommands(t, "git")
	proj := &testutil.Project{Root: t.TempDir()}
	exec.Command("cp", "-r", filepath.Join(testutil.RepoRoot(t), "services"), proj.Root).Run()
	proj.GitInit(t, "v1", "v2")
	d, err := Load(proj.Root, "hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cache := t.TempDir()
	a1, err := d.Build(ctx, proj.Root, cache, "v1", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := d.Build(ctx, proj.Root, cache, "v2", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Commit == a2.Commit || a1.SHA256 == a2.SHA256 {
		t.Errorf("v1 and v2 built alike: %+v %+v", a1, a2)
	}
	out, err := exec.Command(a1.Path, "-h").CombinedOutput()
	if !strings.Contains(string(out), "-addr") {
		t.Errorf("artifact does not run: %v %s", err, out)
	}
	st, _ := os.Stat(a1.Path)
	again, err := d.Build(ctx, proj.Root, cache, "v1", io.Discard)
	if err != nil || again.SHA256 != a1.SHA256 {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(again.Path); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("a cached version was built again")
	}
	if _, err := d.Build(ctx, proj.Root, cache, "v3", io.Discard); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := d.Build(ctx, proj.Root, cache, "--upload-pack=x", io.Discard); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("option-like version: %v", err)
	}
}

// Ensure a service whose source is another repository (repo: URL, the
// seed's HELLO_REPO) is mirrored, and fetched again for a new tag.
func TestBuild_FromRepoURL(t *testing.T) {
	testutil.RequireCommands(t, "git")
	src := &testutil.Project{Root: t.TempDir()}
	exec.Command("cp", "-r", filepath.Join(testutil.RepoRoot(t), "services"), src.Root).Run()
	src.GitInit(t, "v1")
	d, err := Load(src.Root, "hello")
	if err != nil {
		t.Fatal(err)
	}
	d.Repo = "file://" + src.Root
	ctx := context.Background()
	cache, root := t.TempDir(), t.TempDir() // root: a project without the source
	if _, err := d.Build(ctx, root, cache, "v1", io.Discard); err != nil {
		t.Fatal(err)
	}
	src.GitInit(t) // no-op re-init
	exec.Command("git", "-C", src.Root, "tag", "v1b", "v1").Run()
	if _, err := d.Build(ctx, root, cache, "v1b", io.Discard); err != nil {
		t.Fatalf("a tag made after the mirror was not fetched: %v", err)
	}
	if _, err := d.Build(ctx, root, cache, "v9", io.Discard); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("unknown version: %v", err)
	}
}

// The JUnit report of a service:test passes both schemas CI servers hold
// it to: the Jenkins xunit plugin's and Ant's (times with 3 decimals, not
// 8.5127e-05; a timestamp and a hostname per suite; every <failure> and
// <error> with a type), checked by xmllint. A passing check, a failing
// one and an unreachable host are all in it, and it parses back.
func TestWriteJUnit_ValidAgainstSchemas(t *testing.T) {
	testutil.RequireCommands(t, "xmllint")
	path := filepath.Join(t.TempDir(), "junit.xml")
	results := map[string][]CheckResult{
		"w1": {{Check: Check{Name: "greets"}, Duration: 85127 * time.Nanosecond}, {Check: Check{Name: "version"}, Duration: 3 * time.Millisecond}},
		"w2": {{Check: Check{Name: "greets"}, Duration: time.Millisecond, Err: errors.New(`GET /hello: want "Hello", got "Bye" <&>`)}},
	}
	hostErrs := map[string]error{"w3": errors.New("host w3: unreachable: dial tcp 10.0.0.3:22: connect: no route to host")}
	if err := WriteJUnit(path, "hello", time.Date(2026, 11, 26, 19, 30, 0, 0, time.UTC), results, hostErrs, []string{"w1", "w2", "w3"}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckJUnit(t, path)
	var doc struct {
		Suites []struct {
			Name      string `xml:"name,attr"`
			Hostname  string `xml:"hostname,attr"`
			Timestamp string `xml:"timestamp,attr"`
			Tests     int    `xml:"tests,attr"`
			Failures  int    `xml:"failures,attr"`
			Errors    int    `xml:"errors,attr"`
			Cases     []struct {
				Name    string `xml:"name,attr"`
				Time    string `xml:"time,attr"`
				Failure *struct {
					Type string `xml:"type,attr"`
					Text string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, _ := os.ReadFile(path)
	if err := xml.Unmarshal(b, &doc); err != nil || len(doc.Suites) != 3 {
		t.Fatalf("the report does not parse: %v\n%s", err, b)
	}
	w1, w2, w3 := doc.Suites[0], doc.Suites[1], doc.Suites[2]
	if w1.Hostname != "w1" || w1.Timestamp != "2026-11-26T19:30:00" || w1.Tests != 2 || w1.Cases[0].Time != "0.000" || w1.Cases[1].Time != "0.003" {
		t.Errorf("w1: %+v", w1)
	}
	if w2.Failures != 1 || w2.Cases[0].Failure == nil || w2.Cases[0].Failure.Type != "CheckFailed" || !strings.Contains(w2.Cases[0].Failure.Text, `got "Bye" <&>`) {
		t.Errorf("w2: %+v", w2)
	}
	if w3.Errors != 1 || w3.Tests != 1 || !strings.HasPrefix(w3.Cases[0].Name, "reach w3") {
		t.Errorf("w3: %+v", w3)
	}
}
