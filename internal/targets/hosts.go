package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/deploy"
	"booted/internal/discovery"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/liveness"
	"booted/internal/provider"
	"booted/internal/remote"
	"booted/internal/report"
)

// HostsList prints the inventory of an environment.
func (r *Runner) HostsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error { return s.printHosts(ctx) })
}

type hostRow struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	State   string `json:"state"`
	IP      string `json:"ip"`
	HostKey string `json:"hostKey"`
	Since   string `json:"since"`
	Reason  string `json:"reason,omitempty"`
	// Stage is the last stage a booting bare-metal node reached (STAGE@TIME).
	Stage string `json:"stage,omitempty"`
	// Attrs are the operator's attributes (hosts:attr); Pools the pools
	// the host is in (hosts:pool).
	Attrs map[string][]string `json:"attrs,omitempty"`
	Pools []string            `json:"pools,omitempty"`
}

func (s *session) printHosts(ctx context.Context) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	return s.printHostRows(ctx, hosts)
}

// printHostRows lists hosts as hosts:list does.
func (s *session) printHostRows(ctx context.Context, hosts []inventory.Host) error {
	attrs, err := s.store.AllAttrs(ctx, s.env.Name)
	if err != nil {
		return err
	}
	subs, err := s.query().Subjects(ctx, hosts)
	if err != nil {
		return err
	}
	rows := make([]hostRow, 0, len(hosts))
	for _, h := range hosts {
		reason := h.Reason
		if h.Damaged != "" {
			reason = "DAMAGED ROW: " + h.Damaged + " (hosts:clear forgets it)"
		}
		var stage string
		if _, ok := s.provOf(h.Name).(provider.Stages); ok && h.State == inventory.Booting {
			s.store.Get(ctx, s.env.Name, "stage/"+h.Name, &stage)
			if name, at, ok := strings.Cut(stage, "@"); ok && reason == "" {
				reason = "stage " + name + " reached at " + at
			}
		}
		rows = append(rows, hostRow{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr, HostKey: h.HostKey,
			Since: h.Since.UTC().Format(time.RFC3339), Reason: reason, Stage: stage, Attrs: attrs[h.Name], Pools: subs[h.Name].Pools})
	}
	return printRows(s.r, rows, []string{"NAME", "ROLE", "STATE", "IP", "HOSTKEY", "SINCE", "REASON"}, func(x hostRow) []string {
		return []string{x.Name, x.Role, x.State, x.IP, fingerprint(x.HostKey), x.Since, x.Reason}
	})
}

func fingerprint(authorized string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
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
	if err := r.withLock(ctx, envName, "hosts:logged "+envName, func(s *session) error { return s.logged(ctx) }); err != nil {
		return err
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		if err := s.printHosts(ctx); err != nil {
			return err
		}
		return s.printRejected(ctx)
	})
}

func (s *session) printRejected(ctx context.Context) error {
	total, parts, err := discovery.Rejected(ctx, s.store, s.env.Name)
	if err != nil || s.r.JSON { // counters are not part of the host list
		return err
	}
	if _, err = fmt.Fprintf(s.r.Out, "rejected callbacks: %d (%s)\n", total, parts); err != nil {
		return err
	}
	return s.printAlerts(ctx)
}

// printAlerts shows the last host-key-mismatch alerts: callbacks for a
// pinned host with another key or from another address.
func (s *session) printAlerts(ctx context.Context) error {
	alerts, err := discovery.Alerts(ctx, s.store, s.env.Name, 10)
	for _, a := range alerts {
		fmt.Fprintf(s.r.Out, "ALERT %s %s %s: %s\n", a.Kind, a.Host, a.Time.UTC().Format(time.RFC3339), a.Detail)
	}
	return err
}

// pinner records the hosts of a provider whose keys are known beforehand.
func (s *session) pinner(k provider.KnownKeys) *discovery.Pinner {
	return &discovery.Pinner{Store: s.store, Env: s.env.Name, Provider: s.provs.TypeOf(k), Role: s.env.RoleOf,
		Keys: k, AcceptNew: s.r.AcceptNew, Timeout: s.env.Timeouts.SSH.D()}
}

// logged pins the hosts whose keys are known, catches up with the boot
// log, then waits for booting hosts (lifecycle.Hosts.AwaitPhoneHome).
func (s *session) logged(ctx context.Context) error {
	return s.life().AwaitPhoneHome(ctx, s.discoverer)
}

// HostsFilter checks every discovered host with ICMP ping and an SSH login
// against its pinned key: those that pass are ready, those that fail are
// failed with the reason. It writes inventory/ENV/known_hosts for plain ssh.
func (r *Runner) HostsFilter(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "hosts:filter "+envName, func(s *session) error {
		if err := s.filter(ctx); err != nil {
			return err
		}
		return s.printHosts(ctx)
	})
}

func (s *session) filter(ctx context.Context) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	check := liveness.ToCheck(hosts)
	results := s.alive(ctx, check)
	if err := ctx.Err(); err != nil {
		return err
	}
	lost, err := liveness.Record(ctx, s.store, s.env.Name, check, results)
	if err != nil {
		return err
	}
	if err := s.gatherFacts(ctx, check, results); err != nil {
		return err
	}
	if lost { // a serving host failed: the load balancers must not route to it
		if err := s.dep().UpdateLB(ctx); err != nil {
			return err
		}
	}
	return s.writeKnownHosts(ctx)
}

// writeKnownHosts writes inventory/ENV/known_hosts with the pinned key of
// every host that has one, so that `ssh -o UserKnownHostsFile=...` works.
func (s *session) writeKnownHosts(ctx context.Context) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	return fleet.WriteKnownHosts(filepath.Join(s.dir, "known_hosts"), hosts)
}

// HostsClear forgets the discovered hosts of an environment (hosts still
// being provisioned stay) and makes discovery read the live boot log again
// from its start.
func (r *Runner) HostsClear(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "hosts:clear "+envName, func(s *session) error {
		n, err := s.clear(ctx)
		if err == nil && !r.JSON {
			fmt.Fprintf(r.Out, "forgot %d hosts of %s\n", n, envName)
		}
		return err
	})
}

func (s *session) clear(ctx context.Context) (int, error) {
	return s.discoverer().Forget(ctx, "hosts:clear")
}

// HostsReset is a hard reset of what booted knows of the hosts: clear, then
// discover again from the live boot log (waiting for hosts still booting),
// then check liveness.
func (r *Runner) HostsReset(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "hosts:reset "+envName, func(s *session) error {
		if _, err := s.clear(ctx); err != nil {
			return err
		}
		if err := s.logged(ctx); err != nil {
			return err
		}
		if err := s.filter(ctx); err != nil {
			return err
		}
		if err := s.printHosts(ctx); err != nil {
			return err
		}
		if err := s.printRejected(ctx); err != nil {
			return err
		}
		return s.recapHosts(ctx, "hosts:reset "+envName)
	})
}

// recordKnown records the hosts of a provider that knows their keys
// beforehand (static: known_hosts) that the inventory does not have yet,
// so that a static environment works at once, as Fabric does, without a
// hosts:reset first (13 s of it on 1,000 hosts).
func (s *session) recordKnown(ctx context.Context) error {
	for _, p := range s.provs.All() {
		if k, known := p.(provider.KnownKeys); known {
			if err := s.recordKnownOf(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *session) recordKnownOf(ctx context.Context, k provider.KnownKeys) error {
	known, err := k.Known(ctx)
	if err != nil {
		return err
	}
	have, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	in := map[string]bool{}
	for _, h := range have {
		in[h.Name] = true
	}
	var missing []string
	for _, kn := range known {
		if !in[kn.Name] {
			missing = append(missing, kn.Name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return s.pinner(k).Record(ctx, missing...)
}

// recapHosts ends a target that discovered and checked every host with a
// recap (each host ok, or failed with its reason) and an error naming the
// failed ones.
func (s *session) recapHosts(ctx context.Context, title string) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
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
		return fmt.Errorf("%s: %d of %d hosts failed: %s (hosts:list %s shows why)", title, len(bad), len(results), strings.Join(shown, ", "), s.env.Name)
	}
	return nil
}

// NginxRestart starts a new boot log, keeping the old one with a timestamp
// suffix, and (re)starts the controller's nginx.
func (r *Runner) NginxRestart(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "nginx:restart "+envName, func(s *session) error {
		if err := s.prepare(ctx); err != nil {
			return err
		}
		old, err := s.ctl.Restart(ctx)
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
			}{envName, s.env.CallbackAddr(), s.ctl.PID(), s.ctl.BootLog, old})
		}
		fmt.Fprintf(r.Out, "controller nginx of %s: listening on %s (pid %d), boot log %s\n", envName, s.env.CallbackAddr(), s.ctl.PID(), s.ctl.BootLog)
		if old != "" {
			fmt.Fprintf(r.Out, "previous boot log kept as %s\n", old)
		}
		return nil
	})
}

// HostsRun runs a shell command on every host of ENV (or of one role, with
// ENV/ROLE), printing each output line prefixed with the host's name.
func (r *Runner) HostsRun(ctx context.Context, sel, cmd string) error {
	envName, _ := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.hostsOf(ctx, sel)
		if err != nil {
			return err
		}
		job := runJob.Job()
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
			_, err = s.op(ctx, "hosts:run", hosts, jobs.Op{Output: capture.Writers, OnDone: done, Job: job}, func(ctx context.Context, c hostConn) error {
				return c.Run(ctx, cmd)
			})
			return err
		}
		out := report.NewHostOutput(r.Out, r.Err, deploy.HostNames(hosts))
		_, err = s.op(ctx, "hosts:run", hosts, jobs.Op{Output: out.Writers, Job: job, OnDone: func(r remote.Result) { out.Flush(r.Host) }}, func(ctx context.Context, c hostConn) error {
			defer out.Flush(c.Host().Name)
			return c.Run(ctx, cmd)
		})
		return err
	})
}
