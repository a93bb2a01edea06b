package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"booted/internal/config"
	"booted/internal/fleet"
	sess "booted/internal/session"

	"booted/internal/deploy"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/report"
)

// HostsList prints the inventory of an environment.
func (r *Runner) HostsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error { return s.PrintHosts(ctx) })
}

// HostsClear forgets the discovered hosts of an environment (hosts still
// being provisioned stay) and makes discovery read the live boot log again
// from its start.
func (r *Runner) HostsClear(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "hosts:clear "+envName, func(s *session) error {
		n, err := s.Clear(ctx)
		if err == nil && !r.JSON {
			fmt.Fprintf(r.Out, "forgot %d hosts of %s\n", n, envName)
		}
		return err
	})
}

// HostsReset is a hard reset of what booted knows of the hosts: clear, then
// discover again from the live boot log (waiting for hosts still booting),
// then check liveness.
func (r *Runner) HostsReset(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "hosts:reset "+envName, func(s *session) error {
		if _, err := s.Clear(ctx); err != nil {
			return err
		}
		if err := s.Logged(ctx); err != nil {
			return err
		}
		if err := s.Filter(ctx); err != nil {
			return err
		}
		if err := s.PrintHosts(ctx); err != nil {
			return err
		}
		if err := s.PrintRejected(ctx); err != nil {
			return err
		}
		return s.recapHosts(ctx, "hosts:reset "+envName)
	})
}

// recapHosts ends a target that discovered and checked every host with a
// recap (each host ok, or failed with its reason) and an error naming the
// failed ones.
func (s *session) recapHosts(ctx context.Context, title string) error {
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	var results []remote.Result
	for _, h := range hosts {
		if h.State == inventory.Terminated || h.Damaged != "" {
			continue
		}
		r := remote.Result{Host: h.Name, Status: remote.OK, Note: string(h.State)}
		if h.State == inventory.Failed {
			r.Status, r.Error = remote.Failed, h.Reason
		}
		results = append(results, r)
	}
	if bad := report.Recap(s.r.Out, title, results, s.r.JSON); len(bad) > 0 {
		shown := bad
		if len(shown) > 10 {
			shown = append(shown[:10:10], fmt.Sprintf("and %d more", len(bad)-10))
		}
		return fmt.Errorf("%s: %d of %d hosts failed: %s (hosts:list %s shows why)", title, len(bad), len(results), strings.Join(shown, ", "), s.Env.Name)
	}
	return nil
}

// NginxRestart starts a new boot log, keeping the old one with a timestamp
// suffix, and (re)starts the controller's nginx.
func (r *Runner) NginxRestart(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "nginx:restart "+envName, func(s *session) error {
		if err := s.Prepare(ctx); err != nil {
			return err
		}
		old, err := s.Ctl.Restart(ctx)
		if err != nil {
			return err
		}
		if r.JSON {
			return json.NewEncoder(r.Out).Encode(struct {
				Env         string `json:"env"`
				Listen      string `json:"listen"`
				PID         int    `json:"pid"`
				BootLog     string `json:"bootLog"`
				PreviousLog string `json:"previousBootLog,omitempty"`
			}{envName, s.Env.CallbackAddr(), s.Ctl.PID(), s.Ctl.BootLog, old})
		}
		fmt.Fprintf(r.Out, "controller nginx of %s: listening on %s (pid %d), boot log %s\n", envName, s.Env.CallbackAddr(), s.Ctl.PID(), s.Ctl.BootLog)
		if old != "" {
			fmt.Fprintf(r.Out, "previous boot log kept as %s\n", old)
		}
		return nil
	})
}

// HostsRun runs a shell command on every host of ENV (or of one role, with
// ENV/ROLE), printing each output line prefixed with the host's name.
func (r *Runner) HostsRun(ctx context.Context, sel, cmd string) error {
	envName, _ := config.SplitSelector(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		job := sess.RunJob.Job()
		job.Cmd = cmd
		if r.JSON { // a JSON line per host as it finishes (its output inside), then the recap's
			capture := report.NewHostCapture()
			var mu sync.Mutex
			enc := json.NewEncoder(r.Out)
			done := func(res remote.Result) {
				line := report.HostLine{Result: res}
				line.Stdout, line.Stderr = capture.Take(res.Host)
				mu.Lock()
				defer mu.Unlock()
				enc.Encode(line)
			}
			_, err = s.Op(ctx, "hosts:run", hosts, jobs.Op{Output: capture.Writers, OnDone: done, Job: job}, func(ctx context.Context, c fleet.Conn) error {
				return c.Run(ctx, cmd)
			})
			return err
		}
		out := report.NewHostOutput(r.Out, r.Err, deploy.HostNames(hosts))
		_, err = s.Op(ctx, "hosts:run", hosts, jobs.Op{Output: out.Writers, Job: job, OnDone: func(r remote.Result) { out.Flush(r.Host) }}, func(ctx context.Context, c fleet.Conn) error {
			defer out.Flush(c.Host().Name)
			return c.Run(ctx, cmd)
		})
		return err
	})
}

// HostsLogged records the hosts that phoned home (reading the boot log from
// where discovery last stopped), waits for hosts still booting until they
// phone home or pass the boot timeout (then they are failed), and prints the
// hosts and the count of rejected callbacks.
//
// It holds the environment only while it changes the inventory: the
// printing (10,000 hosts, a slow terminal) reads it after, so that an
// operation waiting for the environment does not wait for the terminal.
func (r *Runner) HostsLogged(ctx context.Context, envName string) error {
	return sess.HostsLogged(ctx, r.Options, envName)
}

// HostsFilter checks every discovered host with ICMP ping and an SSH login
// against its pinned key: those that pass are ready, those that fail are
// failed with the reason. It writes inventory/ENV/known_hosts for plain ssh.
func (r *Runner) HostsFilter(ctx context.Context, envName string) error {
	return sess.HostsFilter(ctx, r.Options, envName)
}
