package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"booted/internal/report"
)

// Opts are what the benchmarks that run booted's own command need: the
// project and inventory it runs on, the runs per figure, where to print.
type Opts struct {
	Root, Inventory string
	BenchRuns       int
	JSON            bool
	Out, Err        io.Writer
}

// dailyRow is one figure of bench:daily.
type dailyRow struct {
	What   string  `json:"what"`
	Runs   int     `json:"runs"`
	Median float64 `json:"medianSeconds"`
	Min    float64 `json:"minSeconds"`
	Note   string  `json:"note,omitempty"`
}

// Daily measures what an operator pays every day on ENV, which must
// be up: the cost of one call through `go run mage.go` against the compiled
// command (hosts:list), a no-op env:startAll with the compiled command, and
// the discovery latency (callback to recorded, p50 and p99, from the
// discovery package's benchmark). BOOTED_BENCH_RUNS sets the runs per
// figure (5); it prints medians and minimums side by side.
func Daily(ctx context.Context, r Opts, envName string) error {
	root, err := filepath.Abs(r.Root)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "booted-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "booted")
	fmt.Fprintf(r.Err, "bench:daily: compiling the command (go run mage.go -compile)\n")
	if out, err := r.benchCmd(ctx, root, "go", "run", "mage.go", "-compile", bin).CombinedOutput(); err != nil {
		return fmt.Errorf("bench:daily: go run mage.go -compile: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The environment as its env file wants it, once, untimed: the runs
	// after it are no-ops.
	if out, err := r.benchCmd(ctx, root, bin, "env:startAll", envName).CombinedOutput(); err != nil {
		return fmt.Errorf("bench:daily: env:startAll %s (to bring it to its wanted state first): %v: %s", envName, err, report.TailLines(string(out), 5))
	}
	var rows []dailyRow
	for _, c := range []struct {
		what string
		argv []string
	}{
		{"go run mage.go hosts:list " + envName, []string{"go", "run", "mage.go", "hosts:list", envName}},
		{"booted hosts:list " + envName + " (compiled)", []string{bin, "hosts:list", envName}},
		{"booted env:startAll " + envName + " (compiled, a no-op)", []string{bin, "env:startAll", envName}},
	} {
		fmt.Fprintf(r.Err, "bench:daily: %s × %d\n", c.what, r.BenchRuns)
		var times []time.Duration
		for i := 0; i < r.BenchRuns; i++ {
			start := time.Now()
			if out, err := r.benchCmd(ctx, root, c.argv[0], c.argv[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("bench:daily: %s: %v: %s", c.what, err, report.TailLines(string(out), 5))
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		rows = append(rows, dailyRow{What: c.what, Runs: len(times), Median: times[len(times)/2].Seconds(), Min: times[0].Seconds()})
	}
	fmt.Fprintf(r.Err, "bench:daily: discovery latency (go test -bench BenchmarkDiscoveryLatency ./internal/discovery)\n")
	out, err := r.benchCmd(ctx, root, "go", "test", "-run", "^$", "-bench", "BenchmarkDiscoveryLatency", "-benchtime", "200x", "./internal/discovery").CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench:daily: discovery benchmark: %v: %s", err, report.TailLines(string(out), 5))
	}
	m := regexp.MustCompile(`([0-9.]+) p50-ms\s+([0-9.]+) p99-ms`).FindStringSubmatch(string(out))
	if m == nil {
		return fmt.Errorf("bench:daily: discovery benchmark printed no p50/p99: %s", report.TailLines(string(out), 5))
	}
	rows = append(rows, dailyRow{What: "discovery: callback → recorded", Runs: 200, Note: "p50 " + m[1] + " ms, p99 " + m[2] + " ms"})
	return report.Rows(r.Out, r.JSON, rows, []string{"WHAT", "RUNS", "MEDIAN", "MIN", "NOTE"}, func(x dailyRow) []string {
		if x.Median == 0 {
			return []string{x.What, fmt.Sprint(x.Runs), "", "", x.Note}
		}
		return []string{x.What, fmt.Sprint(x.Runs), seconds(x.Median), seconds(x.Min), x.Note}
	})
}

// benchCmd runs name in root with this project and inventory, and text
// output.
func (r Opts) benchCmd(ctx context.Context, root, name string, args ...string) *exec.Cmd {
	inv, _ := filepath.Abs(r.Inventory)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BOOTED_ROOT="+root, "BOOTED_INVENTORY="+inv, "BOOTED_OUTPUT=text")
	return cmd
}

func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d < time.Second {
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
