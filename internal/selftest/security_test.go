package selftest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"booted/internal/testutil"
)

// Every test SECURITY.md names as the proof of a claim exists: a claim
// whose test was renamed or removed would stand unproved.
func TestSecurity_ClaimsHaveTests(t *testing.T) {
	repo := testutil.RepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(repo, "SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1)
	if len(named) < 10 {
		t.Fatalf("SECURITY.md names %d tests; its claims each name theirs", len(named))
	}
	var src strings.Builder
	filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "_test.go") {
			b, _ := os.ReadFile(p)
			src.Write(b)
		}
		return nil
	})
	for _, m := range named {
		if !strings.Contains(src.String(), "func "+m[1]+"(") {
			t.Errorf("SECURITY.md names %s, which no test file defines", m[1])
		}
	}
}
