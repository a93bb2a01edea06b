package targets

import (
	"context"
	"fmt"
	"strings"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/service"
)

// serviceHosts returns the hosts whose role runs svc, those sel selects
// (a role of the env file, or an expression; all when empty).
func (s *session) serviceHosts(ctx context.Context, svc, sel string) ([]inventory.Host, error) {
	role := sel
	if _, ok := s.Env.Roles[sel]; !ok {
		role = "" // an expression, applied below
	}
	e, err := s.Query().Selector(sel)
	if err != nil {
		return nil, err
	}
	roles := map[string]bool{}
	for name, r := range s.Env.Roles {
		if r.Service == svc && (role == "" || role == name) {
			roles[name] = true
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("%s: no role of %s runs %s (set roles.ROLE.service in the env file)", s.Env.Path, s.Env.Name, svc)
	}
	hosts, err := s.Ops().Select(ctx, "", func(h inventory.Host) bool { return roles[h.Role] })
	if err == nil && role == "" {
		hosts, err = s.Query().Matching(ctx, e, hosts)
	}
	if err != nil {
		return nil, err
	}
	return s.Query().WithClasses(ctx, hosts)
}

// withService opens ENV of sel ("ENV" or "ENV/ROLE"), loads SVC and the
// hosts that run it, and calls fn.
func (r *Runner) withService(ctx context.Context, what, sel, svc string, fn func(s *session, def *service.Def, hosts []inventory.Host) error) error {
	envName, role := config.SplitSelector(sel)
	open := r.withEnv
	if what != "" { // it changes the hosts
		open = func(ctx context.Context, envName string, fn func(s *session) error) error {
			return r.withLock(ctx, envName, what+" "+sel+" "+svc, fn)
		}
	}
	return open(ctx, envName, func(s *session) error {
		def, err := s.LoadService(svc)
		if err != nil {
			return err
		}
		if !r.DryRun {
			if err := s.RecordKnown(ctx); err != nil {
				return err
			}
		}
		hosts, err := s.serviceHosts(ctx, svc, role)
		if err == nil {
			hosts, err = s.Ops().Limited(hosts)
		}
		if err != nil {
			return err
		}
		if r.DryRun { // the plans say what waiting there would be
			return fn(s, def, hosts)
		}
		if hosts, err = s.awaitReady(ctx, what != "", hosts); err != nil {
			return err
		}
		return fn(s, def, hosts)
	})
}

// awaitReady makes a target that needs its hosts up wait for those still
// coming up, as hosts:logged and hosts:filter do (each up to its boot
// timeout), when it holds the environment's lock (wait); it returns the
// hosts as they are now, without those still not up, each skipped with a
// message. (A deploy to a host just started failed "the lifecycle does not
// allow booting → serving".)
func (s *session) awaitReady(ctx context.Context, wait bool, hosts []inventory.Host) ([]inventory.Host, error) {
	var coming []string
	for _, h := range hosts {
		if h.State.ComingUp() {
			coming = append(coming, h.Name)
		}
	}
	if len(coming) == 0 {
		return hosts, nil
	}
	if wait {
		fmt.Fprintf(s.r.Err, "%s: waiting for %s to come up (each up to the boot timeout, %v)\n", s.Env.Name, strings.Join(coming, ", "), s.Env.Timeouts.Boot.D())
		if err := s.Logged(ctx); err != nil {
			return nil, err
		}
		if err := s.Filter(ctx); err != nil {
			return nil, err
		}
	}
	var out []inventory.Host
	for _, h := range hosts {
		cur, err := s.Store.Host(ctx, s.Env.Name, h.Name)
		if err != nil {
			return nil, err
		}
		if cur.State.ComingUp() {
			fmt.Fprintf(s.r.Err, "host %s: skipped: still %s (hosts:logged %s waits for it)\n", cur.Name, cur.State, s.Env.Name)
			continue
		}
		out = append(out, cur)
	}
	return out, nil
}

// ServiceDeploy builds VERSION of SVC once, puts it on every host of ENV that
// runs SVC (ENV/ROLE for one role) that does not have it yet, switches them
// to it and (re)starts it; hosts that pass the health check are serving.
func (r *Runner) ServiceDeploy(ctx context.Context, sel, svc, version string) error {
	return r.withService(ctx, "service:deploy", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.Deploy(ctx, def, version, hosts)
	})
}

// ServiceRollback switches every host of ENV running SVC back to its
// previous release, one batch at a time (BOOTED_BATCH), each out of the load
// balancer while it restarts.
func (r *Runner) ServiceRollback(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:rollback", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.Deploys().RollbackBatches(ctx, def, hosts)
	})
}

// ServiceStart (re)starts SVC on every host of ENV that runs it.
func (r *Runner) ServiceStart(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:start", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.Deploys().Start(ctx, def, hosts)
	})
}

// ServiceStop stops SVC on every host of ENV that runs it.
func (r *Runner) ServiceStop(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:stop", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		if s.r.DryRun {
			return s.Deploys().PlanService(ctx, "service:stop", def, hosts)
		}
		return s.Deploys().Stop(ctx, def, hosts)
	})
}

// ServiceTest runs the checks of SVC's service.yaml against every host of
// ENV that runs it; it fails if any check fails, and writes JUnit XML to
// BOOTED_JUNIT when set.
func (r *Runner) ServiceTest(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.Deploys().Test(ctx, def, hosts)
	})
}

// ServiceLogs prints the last lines of SVC's log on every host of ENV
// (ENV/ROLE, BOOTED_LIMIT), each line prefixed by its host; with
// BOOTED_FOLLOW=1 it follows them (tail -F) until Ctrl-C, which ends it
// cleanly, not as a failure.
func (r *Runner) ServiceLogs(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.Deploys().Logs(ctx, def, hosts, r.Follow)
	})
}
