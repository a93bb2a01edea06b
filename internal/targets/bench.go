package targets

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"booted/internal/bench"
	"booted/internal/inventory"
	"booted/internal/pkgs"
	"booted/internal/provider"
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
	runs := r.BenchRuns
	return r.withEnv(ctx, "bench", func(s *session) error {
		rl := s.env.Roles["workers"]
		names := rl.HostNames(n)
		fmt.Fprintf(r.Out, "bench: starting %d local hosts\n", n)
		start := time.Now()
		if err := s.bootHosts(ctx, names); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "bench: %d hosts ready in %v\n", n, time.Since(start).Round(time.Millisecond))
		defer func() { // the bench hosts, their nginx and bridge go
			cctx := context.WithoutCancel(ctx)
			for _, name := range names {
				if s.delete(cctx, name, true) == nil {
					s.advance(cctx, name, inventory.Terminated, "bench done")
				}
			}
			s.ctl.Stop(cctx)
			if t, ok := s.prov.(provider.Teardowner); ok {
				t.Teardown(cctx)
			}
		}()
		hosts, err := s.selectHosts(ctx, "workers", func(h inventory.Host) bool { return h.State == inventory.Ready })
		if err != nil {
			return err
		}
		var targets []remote.Target
		for _, h := range hosts {
			t, err := target(h)
			if err != nil {
				return err
			}
			targets = append(targets, t)
		}
		dir, err := os.MkdirTemp("", "booted-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		payload, err := bench.Payload(dir)
		if err != nil {
			return err
		}
		key := s.env.SSH.Key
		if key == "" {
			key = filepath.Join(s.dir, "id_ed25519")
		}
		b := &bench.Setup{Hosts: targets, User: s.env.SSH.User, Key: key, Signer: s.signer,
			KnownHosts: filepath.Join(s.dir, "known_hosts"), Runs: runs, Log: r.Out}
		var rows []bench.Row
		gc, gp, err := b.PlainGo(ctx, payload)
		if err != nil {
			return err
		}
		rows = append(rows, bench.Row{Tool: "plain Go x/crypto/ssh", Command: gc, Copy: gp})
		bc, second, bp, err := b.Booted(ctx, payload)
		if err != nil {
			return err
		}
		rows = append(rows, bench.Row{Tool: "booted", Command: bc, Copy: bp}, bench.Row{Tool: "booted, 2nd step same conns", Command: second})
		if err := pkgs.Ensure(ctx, r.Err, pkgs.Need{"parallel-ssh": "pssh", "ansible": "ansible-core"}); err != nil {
			fmt.Fprintf(r.Err, "bench: %v\n", err)
		}
		if _, err := exec.LookPath("parallel-ssh"); err == nil {
			c, p, err := b.PSSH(ctx, dir, payload)
			if err != nil {
				fmt.Fprintf(r.Err, "bench: %v\n", err)
			}
			rows = append(rows, bench.Row{Tool: "parallel-ssh / parallel-scp", Command: c, Copy: p})
		}
		if _, err := exec.LookPath("ansible"); err == nil {
			c, p, err := b.Ansible(ctx, dir, payload)
			if err != nil {
				fmt.Fprintf(r.Err, "bench: %v\n", err)
			}
			rows = append(rows, bench.Row{Tool: "ansible -m raw / -m copy", Command: c, Copy: p})
		}
		fmt.Fprintln(r.Out)
		bench.Table(r.Out, len(targets), rows)
		return nil
	})
}
