package session

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/discovery"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/liveness"
	"booted/internal/provider"
	"booted/internal/report"
)

// HostRow is a host as hosts:list shows it (a JSON line with BOOTED_OUTPUT=json).
type HostRow struct {
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

// PrintHosts lists the environment's hosts as hosts:list does.
func (s *Session) PrintHosts(ctx context.Context) error {
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	return s.PrintHostRows(ctx, hosts)
}

// PrintHostRows lists hosts as hosts:list does.
func (s *Session) PrintHostRows(ctx context.Context, hosts []inventory.Host) error {
	attrs, err := s.Store.AllAttrs(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	subs, err := s.Query().Subjects(ctx, hosts)
	if err != nil {
		return err
	}
	rows := make([]HostRow, 0, len(hosts))
	for _, h := range hosts {
		reason := h.Reason
		if h.Damaged != "" {
			reason = "DAMAGED ROW: " + h.Damaged + " (hosts:clear forgets it)"
		}
		var stage string
		if _, ok := s.ProvOf(h.Name).(provider.Stages); ok && h.State == inventory.Booting {
			s.Store.Get(ctx, s.Env.Name, "stage/"+h.Name, &stage)
			if name, at, ok := strings.Cut(stage, "@"); ok && reason == "" {
				reason = "stage " + name + " reached at " + at
			}
		}
		rows = append(rows, HostRow{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr, HostKey: h.HostKey,
			Since: h.Since.UTC().Format(time.RFC3339), Reason: reason, Stage: stage, Attrs: attrs[h.Name], Pools: subs[h.Name].Pools})
	}
	return report.Rows(s.Out, s.JSON, rows, []string{"NAME", "ROLE", "STATE", "IP", "HOSTKEY", "SINCE", "REASON"}, func(x HostRow) []string {
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

// Pinner records the hosts of a provider whose keys are known beforehand.
func (s *Session) Pinner(k provider.KnownKeys) *discovery.Pinner {
	return &discovery.Pinner{Store: s.Store, Env: s.Env.Name, Provider: s.Provs.TypeOf(k), Role: s.Env.RoleOf,
		Keys: k, AcceptNew: s.AcceptNew, Timeout: s.Env.Timeouts.SSH.D()}
}

// Logged pins the hosts whose keys are known, catches up with the boot
// log, then waits for booting hosts (lifecycle.Hosts.AwaitPhoneHome).
func (s *Session) Logged(ctx context.Context) error {
	return s.Life().AwaitPhoneHome(ctx, s.Discoverer)
}

// Filter checks the hosts that came up (ping, an SSH login against the
// pinned key), gathers their facts, and writes known_hosts (hosts:filter).
func (s *Session) Filter(ctx context.Context) error {
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	check := liveness.ToCheck(hosts)
	results := s.Alive(ctx, check)
	if err := ctx.Err(); err != nil {
		return err
	}
	lost, err := liveness.Record(ctx, s.Store, s.Env.Name, check, results)
	if err != nil {
		return err
	}
	if err := s.GatherFacts(ctx, check, results); err != nil {
		return err
	}
	if lost { // a serving host failed: the load balancers must not route to it
		if err := s.Deploys().UpdateLB(ctx); err != nil {
			return err
		}
	}
	return s.WriteKnownHosts(ctx)
}

// WriteKnownHosts writes inventory/ENV/known_hosts with the pinned key of
// every host that has one, so that `ssh -o UserKnownHostsFile=...` works.
func (s *Session) WriteKnownHosts(ctx context.Context) error {
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	return fleet.WriteKnownHosts(filepath.Join(s.Dir, "known_hosts"), hosts)
}

// Clear forgets the discovered hosts (those still being provisioned
// stay) and has discovery read the boot log again; the count forgotten.
func (s *Session) Clear(ctx context.Context) (int, error) {
	return s.Discoverer().Forget(ctx, "hosts:clear")
}

// RecordKnown records the hosts of a provider that knows their keys
// beforehand (static: known_hosts) that the inventory does not have yet,
// so that a static environment works at once, as Fabric does, without a
// hosts:reset first (13 s of it on 1,000 hosts).
func (s *Session) RecordKnown(ctx context.Context) error {
	for _, p := range s.Provs.All() {
		if k, known := p.(provider.KnownKeys); known {
			if err := s.RecordKnownOf(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// RecordKnownOf records the hosts of k, a provider whose hosts' keys are
// known beforehand, and pins their keys.
func (s *Session) RecordKnownOf(ctx context.Context, k provider.KnownKeys) error {
	known, err := k.Known(ctx)
	if err != nil {
		return err
	}
	have, err := s.Store.Hosts(ctx, s.Env.Name)
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
	return s.Pinner(k).Record(ctx, missing...)
}
