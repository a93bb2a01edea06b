package targets

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"booted/internal/config"
	"booted/internal/fanout"
	"booted/internal/inventory"
	"booted/internal/metadata"
	"booted/internal/provider"
	"booted/internal/provider/sited"
	"booted/internal/service"
)

// EnvStartAll starts every host of every role of ENV (the count of each
// role: workers first, load balancers last), waits for each to phone home
// and checks it answers ping and SSH, then deploys each role's configured
// service version, starts it and tests it. Re-running it skips what is done.
func (r *Runner) EnvStartAll(ctx context.Context, envName string) error {
	return r.envStart(ctx, envName, func(rl *config.Role) int { return rl.Count })
}

// EnvStartMin is EnvStartAll with the minimum number of hosts of each role.
func (r *Runner) EnvStartMin(ctx context.Context, envName string) error {
	return r.envStart(ctx, envName, func(rl *config.Role) int { return rl.Min })
}

func (r *Runner) envStart(ctx context.Context, envName string, count func(*config.Role) int) error {
	return r.withLock(ctx, envName, "env:start "+envName, func(s *session) error {
		var names []string
		for _, role := range s.env.RoleNames() {
			rl := s.env.Roles[role]
			for _, n := range rl.HostNames(count(rl)) {
				if s.ops().InLimit(n, role) {
					names = append(names, n)
				}
			}
		}
		if len(names) == 0 {
			return fmt.Errorf("BOOTED_LIMIT=%s matches none of %s's hosts", strings.Join(s.r.Limit, ","), s.env.Name)
		}
		if s.r.DryRun {
			return s.planStart(ctx, "env:start", names)
		}
		if err := s.bootHosts(ctx, names); err != nil {
			return err
		}
		return s.deployRoles(ctx, names)
	})
}

// bootHosts starts hosts, discovers them and checks them; it fails naming
// the hosts that did not become ready.
func (s *session) bootHosts(ctx context.Context, names []string) error {
	if err := s.startController(ctx); err != nil {
		return err
	}
	var ofSites []string // made by their sites' conductors: asked at once
	for _, n := range names {
		if _, ok := sited.Site(s.provOf(n)); ok {
			ofSites = append(ofSites, n)
			continue
		}
		if err := s.life().Provision(ctx, n); err != nil {
			return err
		}
	}
	if err := s.provisionAll(ctx, ofSites); err != nil {
		return err
	}
	if err := s.logged(ctx); err != nil {
		return err
	}
	if err := s.filter(ctx); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	var failed []string
	for _, h := range hosts {
		if want[h.Name] && !h.State.Up() {
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", h.Name, h.State, h.Reason))
		}
	}
	if len(failed) > 0 {
		s.printHosts(ctx)
		return fmt.Errorf("%s: %d hosts did not come up: %s", s.env.Name, len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// eachRoleService calls fn for each role that runs a service, with its
// hosts among names (roles with none are passed over), in role order.
func (s *session) eachRoleService(ctx context.Context, names []string, fn func(rl *config.Role, def *service.Def, hosts []inventory.Host) error) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, role := range s.env.RoleNames() {
		rl := s.env.Roles[role]
		if rl.Service == "" {
			continue
		}
		def, err := s.loadService(rl.Service)
		if err != nil {
			return err
		}
		hosts, err := s.ops().Select(ctx, role, func(h inventory.Host) bool { return want[h.Name] })
		if err == nil {
			hosts, err = s.query().WithClasses(ctx, hosts)
		}
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			continue
		}
		if err := fn(rl, def, hosts); err != nil {
			return err
		}
	}
	return nil
}

// deployRoles deploys, starts and tests each role's service on the named hosts.
func (s *session) deployRoles(ctx context.Context, names []string) error {
	err := s.eachRoleService(ctx, names, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		if err := s.dep().Deploy(ctx, def, rl.Version, hosts); err != nil {
			return err
		}
		if err := s.dep().Test(ctx, def, hosts); err != nil {
			return err
		}
		if !s.r.JSON {
			for _, h := range hosts {
				fmt.Fprintf(s.r.Out, "%s on %s: curl %s/\n", def.Name, h.Name, def.URL(h.Addr))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The load balancers come up after the workers.
	if err := s.dep().UpdateLB(ctx); err != nil {
		return err
	}
	if url, err := s.dep().LBURL(ctx); err == nil && !s.r.JSON {
		fmt.Fprintf(s.r.Out, "load balancer: curl %s/\n", url)
	}
	return nil
}

// EnvStartWorker (re)starts one host of ENV and its role's service.
func (r *Runner) EnvStartWorker(ctx context.Context, envName, host string) error {
	return r.withLock(ctx, envName, "env:startWorker "+envName+" "+host, func(s *session) error {
		if s.r.DryRun {
			return s.planStart(ctx, "env:startWorker", []string{host})
		}
		return s.startWorker(ctx, host)
	})
}

// startWorker boots one host, deploys its role's service and puts it in
// the load balancer: env:startWorker, and the monitor's scale-up.
func (s *session) startWorker(ctx context.Context, host string) error {
	if _, ok := s.env.RoleOf(host); !ok {
		return fmt.Errorf("%s: %s is not a host of any role", s.env.Path, host)
	}
	if err := s.bootHosts(ctx, []string{host}); err != nil {
		return err
	}
	return s.deployRoles(ctx, []string{host})
}

// EnvStop stops the services and then every host of ENV (load balancers
// first, workers last).
func (r *Runner) EnvStop(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "env:stop "+envName, func(s *session) error {
		if s.r.DryRun {
			return s.planStop(ctx)
		}
		roles := s.env.RoleNames()
		var errs []error
		errs = append(errs, s.dep().StopLB(ctx)) // the load balancers go down first
		insts, err := s.provs.List(ctx)
		if err != nil {
			return err
		}
		for i := len(roles) - 1; i >= 0; i-- {
			rl := s.env.Roles[roles[i]]
			hosts, err := s.ops().Select(ctx, roles[i], func(h inventory.Host) bool { return h.State != inventory.Stopped })
			if err != nil {
				return err
			}
			if rl.Service != "" && len(hosts) > 0 {
				def, err := s.loadService(rl.Service)
				if err != nil {
					return err
				}
				errs = append(errs, s.dep().Stop(ctx, def, hosts))
			}
			for _, in := range insts {
				if role, _ := s.env.RoleOf(in.Name); role == roles[i] {
					errs = append(errs, s.life().Stop(ctx, in.Name))
				}
			}
		}
		if err := s.printHosts(ctx); err != nil {
			return err
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("env:stop %s: %w", envName, err)
		}
		return nil
	})
}

type statusRow struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	State   string `json:"state"`
	IP      string `json:"ip"`
	Service string `json:"service,omitempty"`
	Version string `json:"version,omitempty"`
	Health  string `json:"health,omitempty"`
	// Routes is what a load balancer routes to now.
	Routes string `json:"routes,omitempty"`
}

// EnvStatus shows the hosts of ENV by role and state, and the version and
// health of the service on each.
func (r *Runner) EnvStatus(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		hosts, err := s.store.Hosts(ctx, s.env.Name)
		if err != nil {
			return err
		}
		subs, err := s.query().Subjects(ctx, hosts)
		if err != nil {
			return err
		}
		rows := fanout.Map(ctx, hosts, r.Parallel, func(ctx context.Context, h inventory.Host) statusRow {
			row := statusRow{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr}
			rl := s.env.Roles[h.Role]
			if rl == nil || rl.Service == "" || h.State == inventory.Terminated || h.State == inventory.Stopped {
				return row
			}
			if miss := s.query().MissingClasses(h, subs[h.Name]); len(miss) > 0 {
				row.Health = "not used for " + h.Role + ": " + s.query().ClassWhy(miss)
				return row
			}
			def, err := s.loadService(rl.Service)
			if err != nil {
				row.Health = "unknown: " + err.Error()
				return row
			}
			row.Service, row.Health = def.Name, "ok"
			if _, err := s.io.Get(ctx, def, h, def.Health.Path); err != nil {
				row.Health = "down: " + err.Error()
			}
			row.Version, _ = s.io.Get(ctx, def, h, "/version")
			return row
		})
		for lbName, ups := range s.dep().Routes(ctx) {
			for i := range rows {
				if rows[i].Name == lbName {
					rows[i].Routes = strings.Join(ups, " ")
				}
			}
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Role > rows[j].Role })
		err = printRows(r, rows, []string{"NAME", "ROLE", "STATE", "IP", "SERVICE", "VERSION", "HEALTH", "ROUTES TO"}, func(x statusRow) []string {
			return []string{x.Name, x.Role, x.State, x.IP, x.Service, x.Version, x.Health, x.Routes}
		})
		if err != nil || r.JSON {
			return err
		}
		return s.printAlerts(ctx)
	})
}

// EnvDestroy deletes every host of ENV the provider made (powering it off
// first; the inventory keeps them as terminated), stops the controller's
// nginx and removes what else the provider set up (the local bridge).
func (r *Runner) EnvDestroy(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "env:destroy "+envName, func(s *session) error {
		if s.r.DryRun {
			return s.planDestroy(ctx)
		}
		n, err := s.destroy(ctx, "env:destroy")
		if err == nil && !r.JSON {
			fmt.Fprintf(r.Out, "%s: deleted %d hosts\n", envName, n)
		}
		return err
	})
}

// destroy powers off and deletes every host the provider made (recorded
// as terminated, for why), stops the controller and tears down what else
// the provider set up. It acts on this machine itself, the sites' hosts
// and networks (its namespaces) included, conductors running or not.
func (s *session) destroy(ctx context.Context, why string) (int, error) {
	insts, err := s.provs.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error // one host that cannot be deleted (its BMC down, say) does not keep the rest
	for _, in := range insts {
		if _, ok := s.provs.Own(in.Name).(provider.Deleter); ok {
			if err := s.life().DeleteWith(ctx, s.provs.Own(in.Name), in.Name, true); err != nil {
				errs = append(errs, err)
				continue
			}
			if _, err := s.store.Host(ctx, s.env.Name, in.Name); err == nil {
				if err := s.advance(ctx, in.Name, inventory.Terminated, why); err != nil {
					return n, err
				}
			}
			n++
		}
	}
	if err := s.ctl.Stop(ctx); err != nil {
		return n, errors.Join(append(errs, err)...)
	}

	for _, p := range s.provs.All() {
		if t, ok := p.(provider.Teardowner); ok {
			errs = append(errs, t.Teardown(ctx))
		}
	}
	errs = append(errs, s.downLab(ctx)) // the emulated machines of metal:lab
	errs = append(errs, metadata.Unroute(ctx, s.env.Name))
	return n, errors.Join(errs...)
}
