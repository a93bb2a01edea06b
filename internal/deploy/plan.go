package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/rollout"
	"booted/internal/service"
)

// Plan prints a target's plan: a title and its steps (one JSON object
// with BOOTED_OUTPUT=json).
func (e *Env) Plan(title string, steps []string) error {
	if e.JSON {
		return json.NewEncoder(e.Out).Encode(struct {
			Plan   string   `json:"plan"`
			DryRun bool     `json:"dryRun"`
			Steps  []string `json:"steps"`
		}{title, true, steps})
	}
	fmt.Fprintf(e.Out, "plan %s (BOOTED_DRY_RUN=1: nothing is changed)\n", title)
	for _, l := range steps {
		fmt.Fprintf(e.Out, "  %s\n", l)
	}
	return nil
}

// lbStep says what the load balancers do around a batch of workers.
func (e *Env) lbStep(ctx context.Context, role string) string {
	if role != config.RoleWorkers {
		return ""
	}
	lbs, err := e.LBHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return ""
	}
	return "load balancers " + strings.Join(hostNames(lbs), ", ") + ": each batch is taken out (reload) before it changes and put back after its checks"
}

// PlanDeploy is the plan of rolling version of def out to hosts.
func (e *Env) PlanDeploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host, size rollout.Size) error {
	title := "service:deploy " + def.Name + " " + version
	states := e.States(ctx, def, hosts)
	var steps []string
	var change []string
	for _, h := range hosts {
		st, ok := states[h.Name]
		switch {
		case h.State.ComingUp():
			steps = append(steps, fmt.Sprintf("%s is %s: waited for (up to %v), then changed", h.Name, h.State, e.Env.Timeouts.Boot.D()))
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
		if l := e.lbStep(ctx, role); l != "" {
			steps = append(steps, l)
		}
	}
	if len(change) == 0 {
		steps = append(steps, "nothing to change")
	}
	return e.Plan(title, steps)
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

// PlanService is the plan of service:start, :stop or :rollback.
func (e *Env) PlanService(ctx context.Context, what string, def *service.Def, hosts []inventory.Host) error {
	states := e.States(ctx, def, hosts)
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
	if l := e.lbStep(ctx, roleOfHosts(hosts)); l != "" {
		steps = append(steps, l)
	}
	return e.Plan(what+" "+def.Name, steps)
}
