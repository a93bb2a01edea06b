package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bench"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/pgtest"
	"booted/internal/testutil"
)

// BenchmarkList lists an environment whose role fleet (prefix h) holds
// 1,000 and 10,000 ready hosts, in a SQLite file and on PostgreSQL:
// hosts:list, hosts:query, env:status (bench:list prints the same beside
// ansible-inventory), with the inventory's size (MB). Before the reshape
// each asked the role of every host by naming all 10,000 of its names
// (hosts:list 86.6 s, hosts:query 188 s, env:status 69 s, measured once
// on the code before); the figures are this benchmark's to tell.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, engine := range []string{"SQLite", "PostgreSQL"} {
			b.Run(fmt.Sprintf("%s/%d", engine, n), func(b *testing.B) {
				root := b.TempDir()
				ctx := context.Background()
				db := ""
				if engine == "PostgreSQL" {
					db = pgtest.URL(b)
				}
				if _, err := bench.ListProject(ctx, root, n, db); err != nil {
					b.Fatal(err)
				}
				r := newRunner(root, filepath.Join(root, "inventory"), io.Discard, io.Discard)
				r.Database = db
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
				where := db
				if where == "" {
					where = filepath.Join(root, "inventory", "booted.db")
				}
				st, err := inventory.Open(ctx, where)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				size, _ := st.Size(ctx)
				b.Logf("%s, %d hosts: inventory %.1f MB", engine, n, float64(size)/1e6)
			})
		}
	}
}

// bench:list prints booted's listings of the same recorded hosts beside
// ansible-inventory's, each with a median, and the inventory's engine and
// size (a SQLite file, or BOOTED_DATABASE's PostgreSQL), and leaves
// nothing behind.
func TestBenchList_SideBySide(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if testutil.InCI() {
			t.Fatalf("CI must run this test: %v (the test target installs ansible-core)", err)
		}
		t.Skipf("skipped: ansible-inventory is missing (apt-get install ansible-core): %v", err)
	}
	for _, engine := range []string{"SQLite", "PostgreSQL"} {
		var out, log strings.Builder
		r := newRunner(t.TempDir(), t.TempDir(), &out, &log)
		r.BenchRuns = 1
		if engine == "PostgreSQL" { // BOOTED_DATABASE set: the hosts are recorded there
			r.Database = pgtest.URL(t)
		}
		before, _ := filepath.Glob(filepath.Join(os.TempDir(), "booted-bench-list-*"))
		if err := r.BenchList(context.Background(), 300); err != nil {
			t.Fatalf("bench:list 300 on %s: %v\n%s", engine, err, log.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 7 || lines[0] != "listing 300 hosts (median of 1 runs)" || !strings.HasPrefix(lines[1], "TOOL") ||
			!strings.HasPrefix(lines[6], "inventory: "+engine+", ") || !strings.HasSuffix(lines[6], " MB") {
			t.Fatalf("bench:list on %s printed:\n%s", engine, out.String())
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
		if engine == "PostgreSQL" { // a second run into the same database is refused: its hosts are there
			if err := r.BenchList(context.Background(), 300); err == nil || !strings.Contains(err.Error(), "has 300 hosts already") {
				t.Errorf("bench:list again into the same database: %v", err)
			}
		}
	}
	var out, log strings.Builder
	r := newRunner(t.TempDir(), t.TempDir(), &out, &log)
	if err := r.BenchList(context.Background(), 0); !outcome.Refused(err) {
		t.Errorf("bench:list 0: %v, want a refusal", err)
	}
}
