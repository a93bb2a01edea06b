package service

import (
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

// JUnit XML, as CI servers read it.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the results as JUnit XML, one suite per host; hosts
// that could not be checked at all (unreachable) are given as errors.
func WriteJUnit(path, service string, results map[string][]CheckResult, hostErrs map[string]error, hosts []string) error {
	var doc junitSuites
	for _, h := range hosts {
		s := junitSuite{Name: service + "@" + h}
		if err := hostErrs[h]; err != nil && len(results[h]) == 0 {
			s.Tests, s.Errors = 1, 1
			s.Cases = append(s.Cases, junitCase{Name: "reach " + h, Classname: service + "." + h, Error: &junitFailure{Message: err.Error(), Text: err.Error()}})
		}
		for _, r := range results[h] {
			c := junitCase{Name: r.Check.Name, Classname: service + "." + h, Time: r.Duration.Seconds()}
			if r.Err != nil {
				c.Failure = &junitFailure{Message: r.Err.Error(), Text: r.Err.Error()}
				s.Failures++
			}
			s.Tests++
			s.Time += c.Time
			s.Cases = append(s.Cases, c)
		}
		doc.Suites = append(doc.Suites, s)
	}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}

// Run collects the checks of one service:test over many hosts (safe for
// concurrent use) for its verdict per host and its JUnit report.
type Run struct {
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
	return WriteJUnit(path, service, r.results, r.errs, hs)
}
