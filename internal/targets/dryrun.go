package targets

import (
	"context"
	"fmt"
	"strings"

	"booted/internal/config"
	"booted/internal/deploy"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/report"
	"booted/internal/rollout"
	"booted/internal/service"
)

// A dry run (BOOTED_DRY_RUN=1, as Ansible's --check and Kamal's plans)
// reads what it must (the inventory, each host's service status over SSH)
// and prints what the target would do, changing nothing: no host, no
// load balancer, no inventory row.

// planStart is the plan of env:startAll / env:startMin (and startWorker):
// the hosts booted, then each role's service deployed.
func (s *session) planStart(ctx context.Context, title string, names []string) error {
	var steps []string
	for _, n := range names {
		h, err := s.Store.Host(ctx, s.Env.Name, n)
		switch {
		case err != nil:
			steps = append(steps, fmt.Sprintf("%s: made and booted (%s provider), then it phones home and is checked", n, s.Env.ProviderOf(n)))
		case h.State.Up():
			steps = append(steps, fmt.Sprintf("%s: %s, left running", n, h.State))
		default:
			steps = append(steps, fmt.Sprintf("%s (%s): booted, then it phones home and is checked", n, h.State))
		}
	}
	if err := s.Deploys().Plan(title+" "+s.Env.Name+": hosts", steps); err != nil {
		return err
	}
	size, err := rollout.ParseBatch(s.r.Batch)
	if err != nil {
		return err
	}
	return s.EachRoleService(ctx, names, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		return s.Deploys().PlanDeploy(ctx, def, rl.Version, hosts, size)
	})
}

// planStop is the plan of env:stop.
func (s *session) planStop(ctx context.Context) error {
	var steps []string
	if lbs, _ := s.Deploys().LBHosts(ctx); len(lbs) > 0 {
		steps = append(steps, "load balancers stopped first: "+strings.Join(deploy.HostNames(lbs), ", "))
	}
	roles := s.Env.RoleNames()
	for i := len(roles) - 1; i >= 0; i-- {
		hosts, err := s.Ops().Select(ctx, roles[i], func(h inventory.Host) bool { return h.State != inventory.Stopped })
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			continue
		}
		if svc := s.Env.Roles[roles[i]].Service; svc != "" {
			steps = append(steps, fmt.Sprintf("%s: %s drained and stopped on %s", roles[i], svc, strings.Join(deploy.HostNames(hosts), ", ")))
		}
		steps = append(steps, fmt.Sprintf("%s: hosts stopped: %s", roles[i], strings.Join(deploy.HostNames(hosts), ", ")))
	}
	return s.Deploys().Plan("env:stop "+s.Env.Name, steps)
}

// planDestroy is the plan of env:destroy.
func (s *session) planDestroy(ctx context.Context) error {
	insts, err := s.Provs.List(ctx)
	if err != nil {
		return err
	}
	var del []string
	for _, in := range insts {
		if _, ok := s.ProvOf(in.Name).(provider.Deleter); ok {
			del = append(del, in.Name)
		}
	}
	steps := []string{"hosts powered off and deleted, recorded as terminated: " + report.OrNone(del),
		"the controller's nginx stopped; what the provider set up (bridge, networks) torn down"}
	return s.Deploys().Plan("env:destroy "+s.Env.Name, steps)
}
