package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/rollout"
	"booted/internal/service"
)

// A dry run (BOOTED_DRY_RUN=1, as Ansible's --check and Kamal's plans)
// reads what it must (the inventory, each host's service status over SSH)
// and prints what the target would do, changing nothing: no host, no
// load balancer, no inventory row.

// plan prints a target's plan: a title and its steps (one JSON object
// with BOOTED_OUTPUT=json).
func (s *session) plan(title string, steps []string) error {
	if s.r.JSON {
		return json.NewEncoder(s.r.Out).Encode(struct {
			Plan   string   `json:"plan"`
			DryRun bool     `json:"dryRun"`
			Steps  []string `json:"steps"`
		}{title, true, steps})
	}
	fmt.Fprintf(s.r.Out, "plan %s (BOOTED_DRY_RUN=1: nothing is changed)\n", title)
	for _, l := range steps {
		fmt.Fprintf(s.r.Out, "  %s\n", l)
	}
	return nil
}

// lbStep says what the load balancers do around a batch of workers.
func (s *session) lbStep(ctx context.Context, role string) string {
	if role != config.RoleWorkers {
		return ""
	}
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return ""
	}
	return "load balancers " + strings.Join(hostNames(lbs), ", ") + ": each batch is taken out (reload) before it changes and put back after its checks"
}

// planDeploy is the plan of rolling version of def out to hosts.
func (s *session) planDeploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host, size rollout.Size) error {
	title := "service:deploy " + def.Name + " " + version
	states := s.serviceStates(ctx, def, hosts)
	var steps []string
	var change []string
	for _, h := range hosts {
		st, ok := states[h.Name]
		switch {
		case h.State.ComingUp():
			steps = append(steps, fmt.Sprintf("%s is %s: waited for (up to %v), then changed", h.Name, h.State, s.env.Timeouts.Boot.D()))
			change = append(change, h.Name)
		case h.State == inventory.Serving && st.Running && st.Version == version:
			steps = append(steps, fmt.Sprintf("%s: unchanged, serving %s %s already (pid %d)", h.Name, def.Name, version, st.PID))
		default:
			from := "not running"
			if !ok {
				from = "unreachable now"
			} else if st.Running {
				from = st.Version
			}
			steps = append(steps, fmt.Sprintf("%s (%s): %s %s → %s", h.Name, h.State, def.Name, from, version))
			change = append(change, h.Name)
		}
	}
	batches := rollout.Plan(change, size)
	for i, b := range batches {
		steps = append(steps, fmt.Sprintf("batch %d of %d: %s (upload if missing, switch, restart, health check and checks; a failed batch is rolled back and the rollout stops)", i+1, len(batches), strings.Join(b, ", ")))
	}
	if role := roleOfHosts(hosts); len(change) > 0 {
		if l := s.lbStep(ctx, role); l != "" {
			steps = append(steps, l)
		}
	}
	if len(change) == 0 {
		steps = append(steps, "nothing to change")
	}
	return s.plan(title, steps)
}

// roleOfHosts is the role the hosts share ("" if they do not).
func roleOfHosts(hosts []inventory.Host) string {
	role := ""
	for i, h := range hosts {
		if i > 0 && h.Role != role {
			return ""
		}
		role = h.Role
	}
	return role
}

// planService is the plan of service:start, :stop or :rollback.
func (s *session) planService(ctx context.Context, what string, def *service.Def, hosts []inventory.Host) error {
	states := s.serviceStates(ctx, def, hosts)
	var steps []string
	for _, h := range hosts {
		st := states[h.Name]
		now := "not running"
		if st.Running {
			now = fmt.Sprintf("running %s, pid %d", st.Version, st.PID)
		}
		var do string
		switch what {
		case "service:start":
			do = "restart " + def.Name + " on its current release, then serving"
		case "service:stop":
			do = "drain from the load balancers, stop " + def.Name
		case "service:rollback":
			do = "drain, switch back to its previous release (nothing to do if it has had one only), restart, serving"
		}
		steps = append(steps, fmt.Sprintf("%s (%s; %s): %s", h.Name, h.State, now, do))
	}
	if l := s.lbStep(ctx, roleOfHosts(hosts)); l != "" {
		steps = append(steps, l)
	}
	return s.plan(what+" "+def.Name, steps)
}

// planStart is the plan of env:startAll / env:startMin (and startWorker):
// the hosts booted, then each role's service deployed.
func (s *session) planStart(ctx context.Context, title string, names []string) error {
	var steps []string
	for _, n := range names {
		h, err := s.store.Host(ctx, s.env.Name, n)
		switch {
		case err != nil:
			steps = append(steps, fmt.Sprintf("%s: made and booted (%s provider), then it phones home and is checked", n, s.env.ProviderOf(n)))
		case h.State.Up():
			steps = append(steps, fmt.Sprintf("%s: %s, left running", n, h.State))
		default:
			steps = append(steps, fmt.Sprintf("%s (%s): booted, then it phones home and is checked", n, h.State))
		}
	}
	if err := s.plan(title+" "+s.env.Name+": hosts", steps); err != nil {
		return err
	}
	size, err := rollout.ParseBatch(s.r.Batch)
	if err != nil {
		return err
	}
	return s.eachRoleService(ctx, names, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		return s.planDeploy(ctx, def, rl.Version, hosts, size)
	})
}

// planStop is the plan of env:stop.
func (s *session) planStop(ctx context.Context) error {
	var steps []string
	if lbs, _ := s.lbHosts(ctx); len(lbs) > 0 {
		steps = append(steps, "load balancers stopped first: "+strings.Join(hostNames(lbs), ", "))
	}
	roles := s.env.RoleNames()
	for i := len(roles) - 1; i >= 0; i-- {
		hosts, err := s.ops().Select(ctx, roles[i], func(h inventory.Host) bool { return h.State != inventory.Stopped })
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			continue
		}
		if svc := s.env.Roles[roles[i]].Service; svc != "" {
			steps = append(steps, fmt.Sprintf("%s: %s drained and stopped on %s", roles[i], svc, strings.Join(hostNames(hosts), ", ")))
		}
		steps = append(steps, fmt.Sprintf("%s: hosts stopped: %s", roles[i], strings.Join(hostNames(hosts), ", ")))
	}
	return s.plan("env:stop "+s.env.Name, steps)
}

// planDestroy is the plan of env:destroy.
func (s *session) planDestroy(ctx context.Context) error {
	insts, err := s.provs.List(ctx)
	if err != nil {
		return err
	}
	var del []string
	for _, in := range insts {
		if _, ok := s.provOf(in.Name).(provider.Deleter); ok {
			del = append(del, in.Name)
		}
	}
	steps := []string{"hosts powered off and deleted, recorded as terminated: " + orNone(del),
		"the controller's nginx stopped; what the provider set up (bridge, networks) torn down"}
	return s.plan("env:destroy "+s.env.Name, steps)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
