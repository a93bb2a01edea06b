package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	sess "booted/internal/session"

	"booted/internal/bench"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/pkgs"
	"booted/internal/remote"
)

// BenchFanout makes n local hosts (environment "bench") and times `uname -r`
// and copying a 10 MB file on all of them with a plain Go x/crypto/ssh loop,
// booted, parallel-ssh and ansible (installing pssh and ansible-core from
// Debian packages when missing), printing medians side by side. The hosts
// are deleted afterwards. BOOTED_BENCH_RUNS sets the runs per figure (5).
func (r *Runner) BenchFanout(ctx context.Context, n int) error {
	if n < 1 || n > 1000 {
		return fmt.Errorf("bench:fanout N: N must be 1..1000 (the bench subnet's size), not %d", n)
	}
	return r.withLock(ctx, "bench", "bench:fanout", func(s *session) error {
		rl := s.Env.Roles["workers"]
		names := rl.HostNames(n)
		fmt.Fprintf(r.Out, "bench: starting %d local hosts\n", n)
		start := time.Now()
		defer s.Destroy(context.WithoutCancel(ctx), "bench done") // the bench hosts, their nginx and bridge go (those that came up too when some did not)
		if err := s.BootHosts(ctx, names); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "bench: %d hosts ready in %v\n", n, time.Since(start).Round(time.Millisecond))
		hosts, err := s.Ops().Select(ctx, "workers", func(h inventory.Host) bool { return h.State == inventory.Ready })
		if err != nil {
			return err
		}
		var targets []remote.Target
		for _, h := range hosts {
			t, err := fleet.Target(h)
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
		key := s.Env.SSH.Key
		if key == "" {
			key = filepath.Join(s.Dir, "id_ed25519")
		}
		if err := pkgs.Ensure(ctx, r.Err, bench.Needs); err != nil {
			fmt.Fprintf(r.Err, "bench: %v (the peers missing are left out)\n", err)
		}
		b := &bench.Setup{Hosts: targets, User: s.Env.SSH.User, Key: key, Signer: s.Signer,
			KnownHosts: filepath.Join(s.Dir, "known_hosts"), Runs: r.BenchRuns, Log: r.Out, Parallel: r.Parallel}
		return b.Run(ctx, r.Out, r.Err)
	})
}

// MaxBenchList bounds bench:list (its hosts' addresses fit a /16).
const MaxBenchList = 60000

// BenchList records n hosts in a throw-away project (environment
// benchlist, role fleet) and times hosts:list, hosts:query and env:status
// of them beside ansible-inventory --list of the same hosts (installing
// ansible-core when missing), printing medians side by side, and the
// inventory's engine and size. The hosts are recorded in BOOTED_DATABASE
// when it is set (its environment benchlist must have none). Nothing
// starts; the project is removed afterwards.
func (r *Runner) BenchList(ctx context.Context, n int) error {
	if n < 1 || n > MaxBenchList {
		return outcome.Refuse("bench:list N: N must be 1..%d, not %d", MaxBenchList, n)
	}
	dir, err := os.MkdirTemp("", "booted-bench-list-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(r.Err, "bench: recording %d hosts\n", n)
	ini, err := bench.ListProject(ctx, dir, n, r.Database)
	if err != nil {
		return err
	}
	if err := pkgs.Ensure(ctx, r.Err, bench.ListNeeds); err != nil {
		fmt.Fprintf(r.Err, "bench: %v (ansible-inventory is left out)\n", err)
	}
	q := *r
	q.Root, q.Inventory, q.Out, q.JSON = dir, filepath.Join(dir, "inventory"), io.Discard, false
	where := q.Database
	if where == "" {
		where = filepath.Join(q.Inventory, "booted.db")
	}
	return bench.List(ctx, r.Out, r.Err, n, r.BenchRuns, []bench.Listing{
		{Name: "hosts:list", Run: func(ctx context.Context) error { return q.HostsList(ctx, bench.ListEnv) }},
		{Name: "hosts:query role:fleet", Run: func(ctx context.Context) error { return q.HostsQuery(ctx, bench.ListEnv, "role:fleet") }},
		{Name: "env:status", Run: func(ctx context.Context) error { return q.EnvStatus(ctx, bench.ListEnv) }},
	}, ini, where)
}

// benchOpts are the benchmarks' that run booted's own command.
func (r *Runner) benchOpts() bench.Opts {
	return bench.Opts{Root: r.Root, Inventory: r.Inventory, BenchRuns: r.BenchRuns, JSON: r.JSON, Out: r.Out, Err: r.Err}
}

// BenchConductors measures hosts:run on n hosts done in the target's own
// process against the same run split over two sites, each with a
// conductor (see bench.Conductors).
func (r *Runner) BenchConductors(ctx context.Context, n int) error {
	return bench.Conductors(ctx, r.benchOpts(), n)
}

// BenchDaily measures what an operator pays every day on ENV (see
// bench.Daily).
func (r *Runner) BenchDaily(ctx context.Context, envName string) error {
	if _, err := sess.LoadEnv(r.Root, envName); err != nil {
		return err
	}
	return bench.Daily(ctx, r.benchOpts(), envName)
}
