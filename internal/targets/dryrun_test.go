package targets

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"booted/internal/inventory"
	"booted/internal/lb"
	"booted/internal/report"
	"booted/internal/testutil"
)

// lbState prints a load balancer's configuration mtime and its nginx
// workers' PIDs: both change when it is reloaded.
const lbState = `if [ -s ` + lb.Prefix + `/run/nginx.pid ]; then stat -c %Y.%y ` + lb.Prefix + `/nginx.conf; pgrep -P "$(cat ` + lb.Prefix + `/run/nginx.pid)" | sort; fi`

// hostsOutput runs cmd on the hosts of sel and returns each host's
// output, in host order (not the order they finished in, nor the times).
func (f *fixture) hostsOutput(t *testing.T, sel, cmd string) string {
	t.Helper()
	r := *f.r
	var out testutil.SyncBuffer
	r.JSON, r.Out = true, &out
	if err := r.HostsRun(context.Background(), sel, cmd); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var hl report.HostLine
		if json.Unmarshal([]byte(l), &hl) == nil && hl.Host != "" {
			hosts = append(hosts, hl.Host+":\n"+hl.Stdout)
		}
	}
	sort.Strings(hosts)
	return strings.Join(hosts, "")
}

// BOOTED_DRY_RUN=1 prints each changing target's plan and changes nothing:
// the inventory (hosts and events) and the hosts (service PIDs, releases,
// the load balancer's configuration and workers) are the same before and
// after deploy, rollback, stop, start, startAll, env:stop and env:destroy
// in dry run. (The landed BOOTED_DRY_RUN=1 service:deploy did a real
// deploy.) A changing target without a plan refuses rather than act.
func TestTargets_DryRunChangesNothing(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1", "v2")
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartAll(ctx, env))

	snapshot := func() string {
		t.Helper()
		var b strings.Builder
		hosts := f.hosts(t)
		for _, name := range slices.Sorted(maps.Keys(hosts)) {
			h := hosts[name]
			b.WriteString(name + " " + h.State + " " + h.IP + " " + h.HostKey + " " + h.Since + "\n")
		}
		f.must(t, f.r.withEnv(ctx, env, func(s *session) error {
			evs, err := s.Store.Events(ctx, env, "", 100000)
			for _, e := range evs {
				b.WriteString(e.Kind + " " + e.Host + " " + e.Detail + "\n")
			}
			return err
		}))
		b.WriteString(f.hostsOutput(t, env, `cat /opt/booted/hello/run/pid 2>/dev/null; readlink /opt/booted/hello/current; ls /opt/booted/hello/releases 2>/dev/null; `+lbState))
		return b.String()
	}
	lines := func(s string) int { return len(strings.Split(s, "\n")) }
	before := snapshot()

	f.r.DryRun = true
	f.out.Reset()
	f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v2"))
	out := f.out.String()
	for _, want := range []string{"plan service:deploy hello v2 (BOOTED_DRY_RUN=1: nothing is changed)", "w1 (serving): hello v1 → v2", "w2 (serving): hello v1 → v2", "batch 1 of 2: w1", "batch 2 of 2: w2", "load balancers lb1"} {
		if !strings.Contains(out, want) {
			t.Errorf("the deploy plan lacks %q:\n%s", want, out)
		}
	}
	f.out.Reset()
	f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v1"))
	if out := f.out.String(); !strings.Contains(out, "w1: unchanged, serving hello v1 already") || !strings.Contains(out, "nothing to change") {
		t.Errorf("the plan of deploying the running version:\n%s", out)
	}
	for what, run := range map[string]func() error{
		"service:rollback": func() error { return f.r.ServiceRollback(ctx, env, "hello") },
		"service:stop":     func() error { return f.r.ServiceStop(ctx, env+"/workers", "hello") },
		"service:start":    func() error { return f.r.ServiceStart(ctx, env, "hello") },
		"env:start":        func() error { return f.r.EnvStartAll(ctx, env) },
		"env:stop":         func() error { return f.r.EnvStop(ctx, env) },
		"env:destroy":      func() error { return f.r.EnvDestroy(ctx, env) },
	} {
		f.out.Reset()
		if err := run(); err != nil {
			t.Errorf("%s in dry run: %v", what, err)
		}
		if out := f.out.String(); !strings.Contains(out, "plan "+what) || !strings.Contains(out, "w1") {
			t.Errorf("%s printed no plan naming w1:\n%s", what, out)
		}
	}
	if err := f.r.ImageStop(ctx, env, "w1"); err == nil || !strings.Contains(err.Error(), "has no dry run: nothing was done") {
		t.Errorf("image:stop in dry run: %v", err)
	}
	f.r.DryRun = false

	if after := snapshot(); after != before {
		t.Errorf("a dry run changed the inventory or the hosts:\nbefore (%d lines):\n%s\nafter (%d lines):\n%s", lines(before), before, lines(after), after)
	}
	if h := f.hosts(t)["w1"]; h.State != string(inventory.Serving) {
		t.Errorf("w1 after the dry runs: %+v", h)
	}
}
