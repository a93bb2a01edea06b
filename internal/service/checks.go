package service

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jstemmer/go-junit-report/v2/junit"
)

// CheckResult is one check against one host.
type CheckResult struct {
	Check    Check
	Host     string
	Duration time.Duration
	Err      error
}

var client = &http.Client{Timeout: 10 * time.Second}

// URL returns the service's base URL on a host.
func (d *Def) URL(addr string) string {
	return "http://" + net.JoinHostPort(addr, strconv.Itoa(d.Port))
}

// RunChecks runs every check of service.yaml against the service on addr.
func (d *Def) RunChecks(ctx context.Context, host, addr string) []CheckResult {
	out := make([]CheckResult, 0, len(d.Checks))
	for _, c := range d.Checks {
		start := time.Now()
		err := d.check(ctx, addr, c)
		out = append(out, CheckResult{Check: c, Host: host, Duration: time.Since(start), Err: err})
	}
	return out
}

func (d *Def) check(ctx context.Context, addr string, c Check) error {
	req, err := http.NewRequestWithContext(ctx, c.Method, d.URL(addr)+c.Path, strings.NewReader(c.Data))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != c.Status {
		return fmt.Errorf("%s %s: status %d, want %d (body %q)", c.Method, c.Path, resp.StatusCode, c.Status, trim(b))
	}
	if c.Body != "" && string(b) != c.Body {
		return fmt.Errorf("%s %s: body %q, want %q", c.Method, c.Path, trim(b), c.Body)
	}
	return nil
}

func trim(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// Get returns the body of GET path on the service at addr.
func (d *Def) Get(ctx context.Context, addr, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", d.URL(addr)+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

// WaitHealthy polls the health check until it answers 200 or its timeout passes.
func (d *Def) WaitHealthy(ctx context.Context, addr string) error {
	if d.Health.Path == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.Health.Timeout.D())
	defer cancel()
	var last error
	for {
		if _, err := d.Get(ctx, addr, d.Health.Path); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health check %s not passing within %v: %v", d.Health.Path, d.Health.Timeout.D(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// junitDoc is the JUnit XML document: go-junit-report's suites under a
// <testsuites> with no attributes (Ant's schema allows none; Jenkins'
// needs none).
type junitDoc struct {
	XMLName xml.Name          `xml:"testsuites"`
	Suites  []junit.Testsuite `xml:"testsuite"`
}

// junitTime is a duration as both schemas take it: seconds, 3 decimals
// (not 8.5127e-05).
func junitTime(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the results as JUnit XML, one suite per host (its
// hostname the host's name), valid against the Jenkins xunit and the Ant
// JUnit schemas; hosts that could not be checked at all (unreachable) are
// given as errors. started is when the checks began.
func WriteJUnit(path, service string, started time.Time, results map[string][]CheckResult, hostErrs map[string]error, hosts []string) error {
	var doc junitDoc
	for i, h := range hosts {
		s := junit.Testsuite{Name: service + "@" + h, ID: i, Package: service, Hostname: h,
			Timestamp: started.UTC().Format("2006-01-02T15:04:05"), // Ant's pattern: no zone
			SystemOut: &junit.Output{}, SystemErr: &junit.Output{}}
		s.AddProperty("service", service)
		s.AddProperty("host", h)
		var total time.Duration
		if err := hostErrs[h]; err != nil && len(results[h]) == 0 {
			s.AddTestcase(junit.Testcase{Name: "reach " + h, Classname: service + "." + h, Time: junitTime(0),
				Error: &junit.Result{Message: err.Error(), Type: "Unreachable", Data: err.Error()}})
		}
		for _, r := range results[h] {
			c := junit.Testcase{Name: r.Check.Name, Classname: service + "." + h, Time: junitTime(r.Duration)}
			if r.Err != nil {
				c.Failure = &junit.Result{Message: r.Err.Error(), Type: "CheckFailed", Data: r.Err.Error()}
			}
			total += r.Duration
			s.AddTestcase(c)
		}
		s.Time = junitTime(total)
		doc.Suites = append(doc.Suites, s)
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	b.WriteString("\n")
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Run collects the checks of one service:test over many hosts (safe for
// concurrent use) for its verdict per host and its JUnit report.
type Run struct {
	// Started is when the checks began (the suites' timestamp).
	Started time.Time
	mu      sync.Mutex
	results map[string][]CheckResult
	errs    map[string]error
}

// Add records host's check results and returns an error naming the host
// and every failed check, or nil if all passed.
func (r *Run) Add(host string, rr []CheckResult) error {
	var errs []error
	for _, c := range rr {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("check %q: %w", c.Check.Name, c.Err))
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("host %s: %d of %d checks failed: %w", host, len(errs), len(rr), errors.Join(errs...))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.results == nil {
		r.results, r.errs = map[string][]CheckResult{}, map[string]error{}
	}
	r.results[host] = rr
	if err != nil {
		r.errs[host] = err
	}
	return err
}

// WriteJUnit writes the run as JUnit XML to path, hosts in name order
// (hosts never checked included, as errors).
func (r *Run) WriteJUnit(path, service string, hosts []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := append([]string(nil), hosts...)
	sort.Strings(hs)
	started := r.Started
	if started.IsZero() {
		started = time.Now()
	}
	return WriteJUnit(path, service, started, r.results, r.errs, hs)
}
