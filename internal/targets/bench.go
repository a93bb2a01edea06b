package targets

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"booted/internal/bench"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/pkgs"
	"booted/internal/remote"
)

// BenchFanout makes n local hosts (environment "bench") and times `uname -r`
// and copying a 10 MB file on all of them with a plain Go x/crypto/ssh loop,
// booted, parallel-ssh and ansible (installing pssh and ansible-core from
// Debian packages when missing), printing medians side by side. The hosts
// are deleted afterwards. BOOTED_BENCH_RUNS sets the runs per figure (5).
func (r *Runner) BenchFanout(ctx context.Context, n int) error {
	if n < 1 || n > 230 {
		return fmt.Errorf("bench:fanout N: N must be 1..230 (the bench subnet's size), not %d", n)
	}
	return r.withLock(ctx, "bench", "bench:fanout", func(s *session) error {
		rl := s.env.Roles["workers"]
		names := rl.HostNames(n)
		fmt.Fprintf(r.Out, "bench: starting %d local hosts\n", n)
		start := time.Now()
		if err := s.bootHosts(ctx, names); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "bench: %d hosts ready in %v\n", n, time.Since(start).Round(time.Millisecond))
		defer s.destroy(context.WithoutCancel(ctx), "bench done") // the bench hosts, their nginx and bridge go
		hosts, err := s.selectHosts(ctx, "workers", func(h inventory.Host) bool { return h.State == inventory.Ready })
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
		key := s.env.SSH.Key
		if key == "" {
			key = filepath.Join(s.dir, "id_ed25519")
		}
		if err := pkgs.Ensure(ctx, r.Err, bench.Needs); err != nil {
			fmt.Fprintf(r.Err, "bench: %v (the peers missing are left out)\n", err)
		}
		b := &bench.Setup{Hosts: targets, User: s.env.SSH.User, Key: key, Signer: s.signer,
			KnownHosts: filepath.Join(s.dir, "known_hosts"), Runs: r.BenchRuns, Log: r.Out}
		return b.Run(ctx, r.Out, r.Err)
	})
}
