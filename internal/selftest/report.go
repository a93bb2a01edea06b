package selftest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// pkgResult is what one package's tests did, in one pass.
type pkgResult struct {
	Pass, Fail, Skip int
	NA               int // skipped by design: not applicable (not in Skip)
	Elapsed          float64
	Status           string // ok, FAIL, or "" while it runs
}

// skipped is a test that skipped, and the reason it gave.
type skipped struct{ Pass, Package, Test, Reason string }

// report reads go test -json from several passes at once: it prints each
// package's end and each failed test's output as they come, and at the
// end a table per package with every skip and its reason.
type report struct {
	mu      sync.Mutex
	out     io.Writer
	pkgs    map[string]*pkgResult // "pass\x00package"
	order   []string
	skips   []skipped
	outputs map[string][]string // "pass\x00package\x00test" → its output so far
}

func newReport(out io.Writer) *report {
	return &report{out: out, pkgs: map[string]*pkgResult{}, outputs: map[string][]string{}}
}

// run runs go test -json with args in dir ("" for here) as pass, feeding
// the report; it returns go test's error.
func (r *report) run(ctx context.Context, pass, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json"}, args...)...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			r.line(pass, sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	return err
}

// line takes one line of go test -json's output (or of the go command's
// own, such as a build failure, which is not JSON: printed as it is).
func (r *report) line(pass, l string) {
	var e event
	if !strings.HasPrefix(l, "{") || json.Unmarshal([]byte(l), &e) != nil {
		r.mu.Lock()
		fmt.Fprintln(r.out, l)
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pk := pass + "\x00" + e.Package
	p := r.pkgs[pk]
	if p == nil && e.Package != "" {
		p = &pkgResult{}
		r.pkgs[pk] = p
		r.order = append(r.order, pk)
	}
	tk := pk + "\x00" + e.Test
	switch e.Action {
	case "output", "build-output":
		if e.Test != "" || e.Action == "build-output" {
			r.outputs[tk] = append(r.outputs[tk], e.Output)
		} else if p != nil && p.Status == "" && !strings.HasPrefix(e.Output, "ok ") && !strings.HasPrefix(e.Output, "PASS") &&
			!strings.HasPrefix(e.Output, "FAIL") && !strings.HasPrefix(e.Output, "?") {
			r.outputs[tk] = append(r.outputs[tk], e.Output) // a package's own output (a panic, a timeout)
		}
	case "pass", "fail", "skip":
		if e.Test == "" {
			if p == nil {
				return
			}
			p.Elapsed = max(p.Elapsed, e.Elapsed) // a package may run in two go tests of a pass
			if e.Action == "skip" && p.Pass+p.Fail+p.Skip+p.NA == 0 {
				p.Status = "no tests"
				return
			}
			p.Status = map[string]string{"pass": "ok", "fail": "FAIL", "skip": "ok"}[e.Action]
			fmt.Fprintf(r.out, "%-4s %-8s %-45s %6.1fs  %d passed, %d failed, %d skipped, %d n/a\n", p.Status, pass, e.Package, e.Elapsed, p.Pass, p.Fail, p.Skip, p.NA)
			if e.Action == "fail" {
				if o := r.outputs[tk]; len(o) > 0 {
					io.WriteString(r.out, strings.Join(o, ""))
				}
			}
			delete(r.outputs, tk)
			return
		}
		switch e.Action {
		case "pass":
			p.Pass++
		case "fail":
			p.Fail++
			fmt.Fprintf(r.out, "--- FAIL: %s %s (%s pass):\n%s", e.Package, e.Test, pass, strings.Join(r.outputs[tk], ""))
		case "skip":
			s := skipped{pass, e.Package, e.Test, skipReason(r.outputs[tk])}
			if byDesign.MatchString(s.Reason) {
				p.NA++
			} else {
				p.Skip++
			}
			r.skips = append(r.skips, s)
		}
		delete(r.outputs, tk)
	case "build-fail":
		fmt.Fprintf(r.out, "FAIL %s: does not build:\n%s", e.Package, strings.Join(r.outputs[tk], ""))
	}
}

// skipReason is what a skipped test said, without go test's own lines.
func skipReason(lines []string) string {
	var out []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return "(no reason given)"
	}
	return strings.Join(out, " ")
}

// table writes the per-package table of every pass (tests and subtests
// counted; "n/a" the cases skipped as not applicable) and every skip with
// its reason; it returns the totals.
func (r *report) table(w io.Writer) (pass, fail, skip, na int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pass\tpackage\tpassed\tfailed\tskipped\tn/a\tseconds\tresult\t")
	keys := slices.Clone(r.order)
	slices.Sort(keys)
	for _, k := range keys {
		p := r.pkgs[k]
		if p.Status == "no tests" {
			continue
		}
		status := p.Status
		if status == "" {
			status = "did not end"
		}
		name := strings.SplitN(k, "\x00", 2)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t\n", name[0], name[1], p.Pass, p.Fail, p.Skip, p.NA, p.Elapsed, status)
		pass, fail, skip, na = pass+p.Pass, fail+p.Fail, skip+p.Skip, na+p.NA
	}
	tw.Flush()
	for _, s := range r.skips {
		what := "skipped"
		if byDesign.MatchString(s.Reason) {
			what = "n/a"
		}
		fmt.Fprintf(w, "%s (%s pass): %s %s: %s\n", what, s.Pass, s.Package, s.Test, s.Reason)
	}
	return pass, fail, skip, na
}

// byDesign is the reason of a skip that is no missing install: a case
// that does not apply to its subject (providertest.NotApplicable).
var byDesign = regexp.MustCompile(`^\S+\.go:\d+: not applicable: `)

// skippedTests names the tests that skipped for want of something (the
// ones skipped by design, as not applicable, are not among them).
func (r *report) skippedTests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.skips {
		if !byDesign.MatchString(s.Reason) {
			out = append(out, s.Package+" "+s.Test+" ("+s.Reason+")")
		}
	}
	return out
}
