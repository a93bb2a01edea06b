package selftest

import (
	"strings"
	"testing"
)

// Ensure the report counts what go test -json says per package and pass,
// gives each skip its reason, prints a failed test's output, and leaves
// packages without tests out of the table.
func TestReport_TableAndSkips(t *testing.T) {
	var out strings.Builder
	r := newReport(&out)
	for _, l := range []string{
		`{"Action":"start","Package":"booted/a"}`,
		`{"Action":"run","Package":"booted/a","Test":"TestOK"}`,
		`{"Action":"pass","Package":"booted/a","Test":"TestOK","Elapsed":0.1}`,
		`{"Action":"run","Package":"booted/a","Test":"TestNeedsRoot"}`,
		`{"Action":"output","Package":"booted/a","Test":"TestNeedsRoot","Output":"=== RUN   TestNeedsRoot\n"}`,
		`{"Action":"output","Package":"booted/a","Test":"TestNeedsRoot","Output":"    a_test.go:9: skipped: needs root (run the test target as root)\n"}`,
		`{"Action":"output","Package":"booted/a","Test":"TestNeedsRoot","Output":"--- SKIP: TestNeedsRoot (0.00s)\n"}`,
		`{"Action":"skip","Package":"booted/a","Test":"TestNeedsRoot","Elapsed":0}`,
		`{"Action":"output","Package":"booted/a","Test":"TestConformance/Power","Output":"    providertest.go:97: not applicable: the provider lacks the Power capability\n"}`,
		`{"Action":"skip","Package":"booted/a","Test":"TestConformance/Power","Elapsed":0}`,
		`{"Action":"output","Package":"booted/a","Test":"TestBroken","Output":"    a_test.go:20: want 2, got 3\n"}`,
		`{"Action":"fail","Package":"booted/a","Test":"TestBroken","Elapsed":0}`,
		`{"Action":"fail","Package":"booted/a","Elapsed":1.5}`,
		`{"Action":"output","Package":"booted/b","Output":"?   \tbooted/b\t[no test files]\n"}`,
		`{"Action":"skip","Package":"booted/b","Elapsed":0}`,
		`# booted/c`,
	} {
		r.line("main", l)
	}
	r.line("race", `{"Action":"pass","Package":"booted/a","Test":"TestOK","Elapsed":0.2}`)
	r.line("race", `{"Action":"pass","Package":"booted/a","Elapsed":0.3}`)
	var table strings.Builder
	pass, fail, skip, na := r.table(&table)
	if pass != 2 || fail != 1 || skip != 1 || na != 1 {
		t.Errorf("totals %d passed, %d failed, %d skipped, %d n/a; want 2, 1, 1, 1\n%s", pass, fail, skip, na, table.String())
	}
	for _, want := range []string{
		"main  booted/a  1       1       1        1    1.5      FAIL",
		"n/a (main pass): booted/a TestConformance/Power: providertest.go:97: not applicable: the provider lacks the Power capability",
		"race  booted/a  1       0       0        0    0.3      ok",
		"skipped (main pass): booted/a TestNeedsRoot: a_test.go:9: skipped: needs root (run the test target as root)",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "booted/b") {
		t.Errorf("a package without tests is in the table:\n%s", table.String())
	}
	if s := r.skippedTests(); len(s) != 1 || !strings.Contains(s[0], "TestNeedsRoot (a_test.go:9: skipped: needs root") {
		t.Errorf("skippedTests = %q", s)
	}
	for _, want := range []string{"--- FAIL: booted/a TestBroken (main pass):\n    a_test.go:20: want 2, got 3", "FAIL main     booted/a", "# booted/c"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the streamed output lacks %q:\n%s", want, out.String())
		}
	}
}
