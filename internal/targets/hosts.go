package targets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/liveness"
	"booted/internal/provider/static"
	"booted/internal/remote"
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

// logged catches up with the boot log, then waits for booting hosts.
func (s *session) logged(ctx context.Context) error {
	if k, ok := s.prov.(knower); ok {
		return s.discoverKnown(ctx, k)
	}
	d := s.discoverer()
	var booted []string
	d.OnBooted = func(names []string) { booted = append(booted, names...) }
	timeout := s.env.Timeouts.Boot.D()
	for {
		if err := d.CatchUp(ctx); err != nil {
			return err
		}
		if in, ok := s.prov.(installer); ok {
			for _, n := range booted { // installed: boot from disk from now on
				if err := in.Installed(ctx, n); err != nil {
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
			reason := fmt.Sprintf("no phone-home within %v of boot", timeout)
			if log := filepath.Join(s.dir, "hosts", h.Name, "fs", "var-log", "booted-phone-home.log"); fileExists(log) {
				reason += "; see " + log
			}
			if c, ok := s.prov.(consoleLogger); ok {
				if b, err := os.ReadFile(c.ConsoleLog(h.Name)); err == nil {
					reason += "; console: " + consoleTail(b, 5)
				}
			}
			err := s.store.Update(ctx, func(tx *inventory.Tx) error {
				cur, err := tx.Host(s.env.Name, h.Name)
				if err != nil || cur.State != inventory.Booting || cur.Since != h.Since {
					return err // it moved on meanwhile
				}
				return tx.Modify(s.env.Name, h.Name, func(h *inventory.Host) error { h.State, h.Reason = inventory.Failed, reason; return nil })
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

// consoleLogger is implemented by providers that keep a serial console log.
type consoleLogger interface {
	ConsoleLog(name string) string
}

// consoleTail returns the last n non-empty console lines, one line, without
// terminal escapes.
func consoleTail(b []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(ansi.ReplaceAllString(l, ""))
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[a-zA-Z]|\r`)

// installer is implemented by providers whose hosts install themselves
// and must boot from disk once they have phoned home.
type installer interface {
	Installed(ctx context.Context, name string) error
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
	var addrs []string
	for _, h := range hosts {
		if checkable[h.State] && h.Addr != "" && h.HostKey != "" {
			check = append(check, h)
			addrs = append(addrs, h.Addr)
		}
	}
	pings := liveness.Ping(ctx, addrs, 3, s.env.Timeouts.Ping.D())
	results := make([]error, len(check))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i, h := range check {
		if results[i] = pings[h.Addr]; results[i] != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t, err := target(h)
			if err == nil {
				err = liveness.SSH(ctx, t, s.auth(), s.env.Timeouts.SSH.D())
			}
			results[i] = err
		}()
	}
	wg.Wait()
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
			err = tx.Modify(s.env.Name, h.Name, func(h *inventory.Host) error {
				switch {
				case results[i] != nil:
					lost = lost || h.State == inventory.Serving
					h.State, h.Reason = inventory.Failed, "liveness: "+results[i].Error()
				case h.State == inventory.Booted || h.State == inventory.Failed:
					h.State, h.Reason = inventory.Ready, ""
				}
				return nil
			})
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

func (s *session) auth() remote.Auth { return remote.Auth{User: s.env.SSH.User, Signer: s.signer} }

// target makes the SSH target of an inventory host.
func target(h inventory.Host) (remote.Target, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		return remote.Target{}, fmt.Errorf("host %s: pinned host key unreadable: %w", h.Name, err)
	}
	return remote.Target{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: k}, nil
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
		if p, ok := s.prov.(preparer); ok {
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

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// discoverKnown records hosts whose keys are known beforehand (static
// machines): with their key from the known_hosts file, or pinned on first
// use with BOOTED_ACCEPT_NEW=1; a host with no known key is failed with
// what to do. With names, only those hosts.
func (s *session) discoverKnown(ctx context.Context, k knower, names ...string) error {
	known, err := k.Known(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, kn := range known {
		if len(want) > 0 && !want[kn.Name] {
			continue
		}
		role, _ := s.env.RoleOf(kn.Name)
		key, reason, event := kn.Key, "", ""
		pinKey := "pinned/" + kn.Name
		if key == nil { // pinned on first use earlier?
			var pinned string
			if err := s.store.Update(ctx, func(tx *inventory.Tx) error { _, err := tx.Get(s.env.Name, pinKey, &pinned); return err }); err != nil {
				return err
			}
			if pinned != "" {
				key, _, _, _, _ = ssh.ParseAuthorizedKey([]byte(pinned))
			}
		}
		if key == nil && s.r.AcceptNew {
			key, err = static.FetchKey(ctx, kn.Addr, kn.Port, s.env.Timeouts.SSH.D())
			if err != nil {
				reason = fmt.Sprintf("BOOTED_ACCEPT_NEW: could not read its host key: %v", err)
			} else {
				event = "pinned on first use: " + ssh.FingerprintSHA256(key)
			}
		}
		if key == nil && reason == "" {
			reason = fmt.Sprintf("host key unknown: %s has no key for %s; add it (ssh-keyscan -p %d %s >> %s) or run with BOOTED_ACCEPT_NEW=1 to pin it on first use",
				k.KnownHostsFile(), kn.Addr, kn.Port, kn.Addr, k.KnownHostsFile())
		}
		err := s.store.Update(ctx, func(tx *inventory.Tx) error {
			if event != "" {
				if err := tx.Record(inventory.Event{Env: s.env.Name, Host: kn.Name, Kind: "host-key-pinned", Detail: event}); err != nil {
					return err
				}
				if err := tx.Put(s.env.Name, pinKey, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))); err != nil {
					return err
				}
			}
			return tx.Modify(s.env.Name, kn.Name, func(h *inventory.Host) error {
				h.Role, h.Provider, h.Addr, h.Port = role, s.env.Provider.Type, kn.Addr, kn.Port
				if key == nil {
					h.State, h.Reason = inventory.Failed, reason
					return nil
				}
				h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
				if h.State != inventory.Ready && h.State != inventory.Serving {
					h.State, h.Reason = inventory.Booted, ""
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}
