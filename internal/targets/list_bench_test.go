package targets

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bench"
	"booted/internal/outcome"
	"booted/internal/testutil"
)

// BenchmarkList10000 lists an environment whose role fleet (prefix h,
// max 10,000) holds 10,000 ready hosts: hosts:list, hosts:query,
// env:status (bench:list prints the same beside ansible-inventory).
// Each asked the role of every host by naming all 10,000 of its names
// (hosts:list 86.6 s, hosts:query 188 s, env:status 69 s, measured once
// on the code before); the figures are this benchmark's to tell.
func BenchmarkList10000(b *testing.B) {
	root := b.TempDir()
	ctx := context.Background()
	if _, err := bench.ListProject(ctx, root, 10000); err != nil {
		b.Fatal(err)
	}
	inv := filepath.Join(root, "inventory")
	r := newRunner(root, inv, io.Discard, io.Discard)
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"hosts:list", func() error { return r.HostsList(ctx, bench.ListEnv) }},
		{"hosts:query", func() error { return r.HostsQuery(ctx, bench.ListEnv, "role:fleet") }},
		{"env:status", func() error { return r.EnvStatus(ctx, bench.ListEnv) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bench:list prints booted's listings of the same recorded hosts beside
// ansible-inventory's, each with a median, and leaves nothing behind.
func TestBenchList_SideBySide(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if testutil.InCI() {
			t.Fatalf("CI must run this test: %v (the test target installs ansible-core)", err)
		}
		t.Skipf("skipped: ansible-inventory is missing (apt-get install ansible-core): %v", err)
	}
	var out, log strings.Builder
	r := newRunner(t.TempDir(), t.TempDir(), &out, &log)
	r.BenchRuns = 1
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "booted-bench-list-*"))
	if err := r.BenchList(context.Background(), 300); err != nil {
		t.Fatalf("bench:list 300: %v\n%s", err, log.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 || lines[0] != "listing 300 hosts (median of 1 runs)" || !strings.HasPrefix(lines[1], "TOOL") {
		t.Fatalf("bench:list printed:\n%s", out.String())
	}
	for i, want := range []string{"booted hosts:list", "booted hosts:query role:fleet", "booted env:status", "ansible-inventory --list"} {
		f := strings.Fields(lines[i+2])
		if strings.Join(f[:len(f)-1], " ") != want {
			t.Errorf("row %d: %q, want %s", i, lines[i+2], want)
		}
		if d, err := time.ParseDuration(f[len(f)-1]); err != nil || d <= 0 {
			t.Errorf("row %q: its median is not a duration: %v", lines[i+2], err)
		}
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "booted-bench-list-*"))
	if len(after) > len(before) {
		t.Errorf("bench:list left its project: %v", after)
	}
	if err := r.BenchList(context.Background(), 0); !outcome.Refused(err) {
		t.Errorf("bench:list 0: %v, want a refusal", err)
	}
}
