package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/provider"
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
}

func (s *session) printHosts(ctx context.Context) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	rows := make([]hostRow, 0, len(hosts))
	for _, h := range hosts {
		rows = append(rows, hostRow{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr, HostKey: h.HostKey,
			Since: h.Since.UTC().Format(time.RFC3339), Reason: h.Reason})
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
func (r *Runner) HostsLogged(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if err := s.logged(ctx); err != nil {
			return err
		}
		if err := s.printHosts(ctx); err != nil {
			return err
		}
		return s.printRejected(ctx)
	})
}

func (s *session) printRejected(ctx context.Context) error {
	c, err := s.store.Counters(ctx, s.env.Name)
	if err != nil {
		return err
	}
	var total int64
	var parts []string
	for _, n := range discovery.RejectedCounters {
		total += c[n]
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(n, "callbacks."), c[n]))
	}
	if s.r.JSON {
		return nil // counters are not part of the host list
	}
	_, err = fmt.Fprintf(s.r.Out, "rejected callbacks: %d (%s)\n", total, strings.Join(parts, ", "))
	return err
}

// pinner records the hosts of a provider whose keys are known beforehand.
func (s *session) pinner(k provider.KnownKeys) *discovery.Pinner {
	return &discovery.Pinner{Store: s.store, Env: s.env.Name, Provider: s.env.Provider.Type, Role: s.env.RoleOf,
		Keys: k, AcceptNew: s.r.AcceptNew, Timeout: s.env.Timeouts.SSH.D()}
}

// logged catches up with the boot log, then waits for booting hosts.
func (s *session) logged(ctx context.Context) error {
	if k, ok := s.prov.(provider.KnownKeys); ok {
		return s.pinner(k).Record(ctx)
	}
	d := s.discoverer()
	var booted []string
	d.OnBooted = func(names []string) { booted = append(booted, names...) }
	timeout := s.env.Timeouts.Boot.D()
	for {
		if err := d.CatchUp(ctx); err != nil {
			return err
		}
		if nb, ok := s.prov.(provider.Netboot); ok {
			for _, n := range booted { // installed: boot from disk from now on
				if err := nb.Installed(ctx, n); err != nil {
					fmt.Fprintf(s.r.Err, "host %s: %v\n", n, err)
				}
			}
		}
		booted = booted[:0]
		hosts, err := s.store.Hosts(ctx, s.env.Name)
		if err != nil {
			return err
		}
		waiting := 0
		for _, h := range hosts {
			if h.State != inventory.Booting {
				continue
			}
			if time.Since(h.Since) < timeout {
				waiting++
				continue
			}
			reason := fmt.Sprintf("no phone-home within %v of boot", timeout) + s.consoleTail(h.Name)
			err := s.store.Update(ctx, func(tx *inventory.Tx) error {
				cur, err := tx.Host(s.env.Name, h.Name)
				if err != nil || cur.State != inventory.Booting || cur.Since != h.Since {
					return err // it moved on meanwhile
				}
				return tx.Advance(s.env.Name, h.Name, inventory.Failed, reason)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(s.r.Err, "host %s: failed: %s\n", h.Name, reason)
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// consoleTail is "; see FILE; console: its last lines", where the provider
// keeps a console log for the host.
func (s *session) consoleTail(name string) string {
	c, ok := s.prov.(provider.Console)
	if !ok {
		return ""
	}
	b, err := os.ReadFile(c.ConsoleLog(name))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	return fmt.Sprintf("; see %s; console: %s", c.ConsoleLog(name), provider.ConsoleTail(b, 5))
}

// HostsFilter checks every discovered host with ICMP ping and an SSH login
// against its pinned key: those that pass are ready, those that fail are
// failed with the reason. It writes inventory/ENV/known_hosts for plain ssh.
func (r *Runner) HostsFilter(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if err := s.filter(ctx); err != nil {
			return err
		}
		return s.printHosts(ctx)
	})
}

// checkable are the states in which a host is expected to be up.
var checkable = map[inventory.State]bool{inventory.Booted: true, inventory.Ready: true, inventory.Serving: true, inventory.Failed: true}

func (s *session) filter(ctx context.Context) error {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	var check []inventory.Host
	for _, h := range hosts {
		if checkable[h.State] && h.Addr != "" && h.HostKey != "" {
			check = append(check, h)
		}
	}
	results := s.io.Alive(ctx, check, s.r.Parallel)
	if err := ctx.Err(); err != nil {
		return err
	}
	lost := false
	err = s.store.Update(ctx, func(tx *inventory.Tx) error {
		lost = false
		for i, h := range check {
			cur, err := tx.Host(s.env.Name, h.Name)
			if err != nil || cur.State != h.State {
				continue // it moved on meanwhile
			}
			switch {
			case results[i] != nil:
				lost = lost || h.State == inventory.Serving
				err = tx.Advance(s.env.Name, h.Name, inventory.Failed, "liveness: "+results[i].Error())
			case h.State == inventory.Booted || h.State == inventory.Failed:
				err = tx.Advance(s.env.Name, h.Name, inventory.Ready, "")
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if lost { // a serving host failed: the load balancers must not route to it
		if err := s.updateLB(ctx); err != nil {
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
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	var b strings.Builder
	for _, h := range hosts {
		if h.HostKey == "" || h.Addr == "" || h.State == inventory.Terminated {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
		if err != nil {
			continue
		}
		addr := h.Addr
		if h.Port != 0 && h.Port != 22 {
			addr = fmt.Sprintf("[%s]:%d", h.Addr, h.Port)
		}
		b.WriteString(knownhosts.Line([]string{addr}, k) + "\n")
	}
	path := filepath.Join(s.dir, "known_hosts")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// HostsClear forgets the discovered hosts of an environment (hosts still
// being provisioned stay) and makes discovery read the live boot log again
// from its start.
func (r *Runner) HostsClear(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		n, err := s.clear(ctx)
		if err == nil && !r.JSON {
			fmt.Fprintf(r.Out, "forgot %d hosts of %s\n", n, envName)
		}
		return err
	})
}

func (s *session) clear(ctx context.Context) (int, error) {
	n := 0
	err := s.store.Update(ctx, func(tx *inventory.Tx) error {
		n = 0
		hosts, err := tx.Hosts(s.env.Name)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			switch h.State {
			case inventory.Requested, inventory.Provisioning, inventory.Booting:
				continue
			}
			if err := tx.Forget(s.env.Name, h.Name, "hosts:clear"); err != nil {
				return err
			}
			n++
		}
		return s.discoverer().Rewind(tx)
	})
	return n, err
}

// HostsReset is a hard reset of what booted knows of the hosts: clear, then
// discover again from the live boot log (waiting for hosts still booting),
// then check liveness.
func (r *Runner) HostsReset(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
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
		return s.printRejected(ctx)
	})
}

// NginxRestart starts a new boot log, keeping the old one with a timestamp
// suffix, and (re)starts the controller's nginx.
func (r *Runner) NginxRestart(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if p, ok := s.prov.(provider.Preparer); ok {
			if err := p.Prepare(ctx); err != nil {
				return err
			}
		}
		old, err := s.ctl.Restart(ctx)
		if err != nil {
			return err
		}
		if !r.JSON {
			fmt.Fprintf(r.Out, "controller nginx of %s: listening on %s (pid %d), boot log %s\n", envName, s.env.CallbackAddr(), s.ctl.PID(), s.ctl.BootLog)
			if old != "" {
				fmt.Fprintf(r.Out, "previous boot log kept as %s\n", old)
			}
		}
		return nil
	})
}

// HostsRun runs a shell command on every host of ENV (or of one role, with
// ENV/ROLE), printing each output line prefixed with the host's name.
func (r *Runner) HostsRun(ctx context.Context, sel, cmd string) error {
	envName, role := splitSel(sel)
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.selectHosts(ctx, role, nil)
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			return fmt.Errorf("%s: no hosts to run on (hosts:list %s shows the inventory)", sel, envName)
		}
		width := 0
		for _, h := range hosts {
			width = max(width, len(h.Name))
		}
		var mu sync.Mutex
		prefixers := map[string][2]*report.Prefixer{}
		_, err = s.op(ctx, "hosts:run", hosts, opOptions{output: func(host string) (io.Writer, io.Writer) {
			p := fmt.Sprintf("%-*s | ", width, host)
			o, e := report.NewPrefixer(r.Out, &mu, p), report.NewPrefixer(r.Err, &mu, p)
			mu.Lock()
			prefixers[host] = [2]*report.Prefixer{o, e}
			mu.Unlock()
			return o, e
		}}, func(ctx context.Context, c hostConn) error {
			err := c.Run(ctx, cmd)
			mu.Lock()
			ps := prefixers[c.Host().Name]
			mu.Unlock()
			if ps[0] != nil {
				ps[0].Flush()
				ps[1].Flush()
			}
			return err
		})
		return err
	})
}
