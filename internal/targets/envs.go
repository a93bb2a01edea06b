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
		for _, role := range s.Env.RoleNames() {
			rl := s.Env.Roles[role]
			for _, n := range rl.HostNames(count(rl)) {
				if s.Ops().InLimit(n, role) {
					names = append(names, n)
				}
			}
		}
		if len(names) == 0 {
			return fmt.Errorf("BOOTED_LIMIT=%s matches none of %s's hosts", strings.Join(s.r.Limit, ","), s.Env.Name)
		}
		if s.r.DryRun {
			return s.planStart(ctx, "env:start", names)
		}
		if err := s.BootHosts(ctx, names); err != nil {
			return err
		}
		return s.DeployRoles(ctx, names)
	})
}

// EnvStartWorker (re)starts one host of ENV and its role's service.
func (r *Runner) EnvStartWorker(ctx context.Context, envName, host string) error {
	return r.withLock(ctx, envName, "env:startWorker "+envName+" "+host, func(s *session) error {
		if s.r.DryRun {
			return s.planStart(ctx, "env:startWorker", []string{host})
		}
		return s.StartWorker(ctx, host)
	})
}

// EnvStop stops the services and then every host of ENV (load balancers
// first, workers last).
func (r *Runner) EnvStop(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "env:stop "+envName, func(s *session) error {
		if s.r.DryRun {
			return s.planStop(ctx)
		}
		roles := s.Env.RoleNames()
		var errs []error
		errs = append(errs, s.Deploys().StopLB(ctx)) // the load balancers go down first
		insts, err := s.Provs.List(ctx)
		if err != nil {
			return err
		}
		for i := len(roles) - 1; i >= 0; i-- {
			rl := s.Env.Roles[roles[i]]
			hosts, err := s.Ops().Select(ctx, roles[i], func(h inventory.Host) bool { return h.State != inventory.Stopped })
			if err != nil {
				return err
			}
			if rl.Service != "" && len(hosts) > 0 {
				def, err := s.LoadService(rl.Service)
				if err != nil {
					return err
				}
				errs = append(errs, s.Deploys().Stop(ctx, def, hosts))
			}
			for _, in := range insts {
				if role, _ := s.Env.RoleOf(in.Name); role == roles[i] {
					errs = append(errs, s.Life().Stop(ctx, in.Name))
				}
			}
		}
		if err := s.PrintHosts(ctx); err != nil {
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
		hosts, err := s.Store.Hosts(ctx, s.Env.Name)
		if err != nil {
			return err
		}
		subs, err := s.Query().Subjects(ctx, hosts)
		if err != nil {
			return err
		}
		rows := fanout.Map(ctx, hosts, r.Parallel, func(ctx context.Context, h inventory.Host) statusRow {
			row := statusRow{Name: h.Name, Role: h.Role, State: string(h.State), IP: h.Addr}
			rl := s.Env.Roles[h.Role]
			if rl == nil || rl.Service == "" || h.State == inventory.Terminated || h.State == inventory.Stopped {
				return row
			}
			if miss := s.Query().MissingClasses(h, subs[h.Name]); len(miss) > 0 {
				row.Health = "not used for " + h.Role + ": " + s.Query().ClassWhy(miss)
				return row
			}
			def, err := s.LoadService(rl.Service)
			if err != nil {
				row.Health = "unknown: " + err.Error()
				return row
			}
			row.Service, row.Health = def.Name, "ok"
			if _, err := s.IO.Get(ctx, def, h, def.Health.Path); err != nil {
				row.Health = "down: " + err.Error()
			}
			row.Version, _ = s.IO.Get(ctx, def, h, "/version")
			return row
		})
		for lbName, ups := range s.Deploys().Routes(ctx) {
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
		return s.PrintAlerts(ctx)
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
		n, err := s.Destroy(ctx, "env:destroy")
		if err == nil && !r.JSON {
			fmt.Fprintf(r.Out, "%s: deleted %d hosts\n", envName, n)
		}
		return err
	})
}
