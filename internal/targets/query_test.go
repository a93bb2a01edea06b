package targets

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"booted/internal/inventory"
	"booted/internal/testutil"
)

// Attributes, pools and the expression language, as an operator uses them:
// hosts:attr and hosts:pool record facts, hosts:query answers with them,
// and the same expression selects the hosts of hosts:run, service:deploy
// and service:test; a bad expression is refused with a caret before
// anything runs.
func TestFake_QueryAttrsPools(t *testing.T) {
	f, ctx := startedFake(t)
	f.must(t, f.r.HostsAttr(ctx, f.env, "w1", "add rack r1"))
	f.must(t, f.r.HostsAttr(ctx, f.env, "w2", "add rack r1"))
	f.must(t, f.r.HostsAttr(ctx, f.env, "w3", "set rack r2"))
	f.must(t, f.r.HostsAttr(ctx, f.env, "w3", "add owner ada bob"))
	f.must(t, f.r.HostsAttr(ctx, f.env, "w3", "del owner ada"))
	f.must(t, f.r.HostsPool(ctx, f.env, "canary", "add w1 w3"))
	// w2 has failed (a liveness check said so).
	f.must(t, f.r.withEnv(ctx, f.env, func(s *session) error {
		return s.Store.Advance(ctx, f.env, "w2", inventory.Failed, "liveness: test")
	}))

	query := func(expr string) string {
		t.Helper()
		f.r.JSON = true
		defer func() { f.r.JSON = false }()
		f.out.Reset()
		f.must(t, f.r.HostsQuery(ctx, f.env, expr))
		var rows []hostRow
		if err := unmarshalRows(f.out.Bytes(), &rows); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.Name)
		}
		return strings.Join(names, " ")
	}
	for expr, want := range map[string]string{
		"role:workers and not state:failed and attr:rack=r1": "w1",
		"attr:rack=r1":                     "w1 w2",
		"pool:canary":                      "w1 w3",
		"attr:owner=bob":                   "w3",
		"attr:owner=ada":                   "",
		"role:workers and not pool:canary": "w2",
		"provider:local and attr:ip=192.*": "lb1 w1 w2 w3",
		"loadbalancers":                    "lb1",
	} {
		if got := query(expr); got != want {
			t.Errorf("hosts:query %q = %q, want %q", expr, got, want)
		}
	}
	// clusto's question: 2 hosts that are not load balancers, each in a
	// different rack; 3 cannot be had (two racks only).
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsPick(ctx, f.env, "not role:loadbalancers", 2, "rack"))
	f.r.JSON = false
	var picked []hostRow
	if err := unmarshalRows(f.out.Bytes(), &picked); err != nil || len(picked) != 2 || picked[0].Name != "w1" || picked[1].Name != "w3" {
		t.Errorf("hosts:pick 2 by rack: %v %s", err, f.out)
	}
	if err := f.r.HostsPick(ctx, f.env, "not role:loadbalancers", 3, "rack"); err == nil || !strings.Contains(err.Error(), "3 hosts match \"not role:loadbalancers\" with 2 distinct values of rack; 3 asked") {
		t.Errorf("hosts:pick 3 by rack out of 2 racks: %v", err)
	}

	// hosts:list shows the attributes and pools.
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsList(ctx, f.env))
	f.r.JSON = false
	var rows []hostRow
	if err := unmarshalRows(f.out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "w3" && (fmt.Sprint(r.Attrs["owner"], r.Attrs["rack"], r.Attrs["memory_mb"]) != "[bob] [r2] [1024]" || fmt.Sprint(r.Pools) != "[canary]") {
			t.Errorf("hosts:list w3: attrs %v, pools %v", r.Attrs, r.Pools)
		}
	}

	// The same expression selects the hosts of hosts:run, service:deploy
	// and service:test.
	sel := f.env + "/role:workers and not state:failed and attr:rack=r1"
	f.io.with(func() { f.io.log = nil })
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, sel, "uptime"))
	if out := f.out.String(); !strings.Contains(out, "w1 | ran uptime") || strings.Contains(out, "w2") || strings.Contains(out, "w3") || strings.Contains(out, "lb1") {
		t.Errorf("hosts:run %q:\n%s", sel, out)
	}
	f.must(t, f.r.ServiceDeploy(ctx, f.env+"/pool:canary", "hello", "v2"))
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w1 v2 deploy w3 v2]" {
		t.Errorf("service:deploy ENV/pool:canary deployed %v", got)
	}
	f.out.Reset()
	f.must(t, f.r.ServiceTest(ctx, f.env+"/attr:rack=r2", "hello"))
	if out := f.out.String(); !strings.Contains(out, "recap service:test hello: 1 ok") || !strings.Contains(out, "w3") {
		t.Errorf("service:test ENV/attr:rack=r2:\n%s", out)
	}

	// A bad expression is refused, pointing at the word, and nothing runs.
	f.io.with(func() { f.io.log = nil })
	before := f.states(t)
	for _, run := range []func(sel string) error{
		func(sel string) error { return f.r.HostsRun(ctx, sel, "uptime") },
		func(sel string) error { return f.r.ServiceDeploy(ctx, sel, "hello", "v1") },
		func(sel string) error { return f.r.ServiceTest(ctx, sel, "hello") },
	} {
		err := run(f.env + "/role:workers and nto state:failed")
		if err == nil || !strings.Contains(err.Error(), `"nto" before it reads as a role or host name: is it a misspelt and, or, not?`) || !strings.Contains(err.Error(), "\n  role:workers and nto state:failed\n                       ^") {
			t.Errorf("a bad expression: %v", err)
		}
	}
	if err := f.r.HostsQuery(ctx, f.env, "attr:"); err == nil || !strings.Contains(err.Error(), "expected a value after attr:") {
		t.Errorf("hosts:query attr: : %v", err)
	}
	if got := f.io.logged(""); len(got) > 0 {
		t.Errorf("a refused expression still did %v", got)
	}
	if after := f.states(t); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused expression changed the inventory: %v → %v", before, after)
	}

	// Attributes booted fills itself cannot be set by hand; a host not in
	// the inventory is named.
	for spec, want := range map[string]string{"set ip 10.0.0.1": "fills itself", "add ec2.owner bob": "fills itself", "add rack": "want", "frob rack r1": "want", "add a=b c": "a key is a word without"} {
		if err := f.r.HostsAttr(ctx, f.env, "w1", spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("hosts:attr %q: %v, want %q", spec, err, want)
		}
	}
	if err := f.r.HostsAttr(ctx, f.env, "w9", "add rack r1"); err == nil || !strings.Contains(err.Error(), "host w9") {
		t.Errorf("hosts:attr of an unknown host: %v", err)
	}
	if err := f.r.HostsPool(ctx, f.env, "canary", "add w9"); err == nil || !strings.Contains(err.Error(), "w9") {
		t.Errorf("hosts:pool add of an unknown host: %v", err)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.PoolsList(ctx, f.env))
	f.r.JSON = false
	if out := strings.TrimSpace(f.out.String()); out != `{"pool":"canary","hosts":["w1","w3"]}` {
		t.Errorf("pools:list: %s", out)
	}
}

// Facts are gathered once per boot at the first login, and classes over
// them decide which hosts a role uses: a worker without the memory the
// workers' class asks for is not deployed to, and env:status and stderr
// say why.
func TestFake_FactsAndClasses(t *testing.T) {
	f := fakeProject(t, `  loadbalancers: {hosts: [lb1], min: 1, max: 1}
  workers: {prefix: w, count: 3, min: 1, max: 4, service: hello, version: v1, classes: [bigmem]}
classes:
  bigmem: memory_mb >= 2048
`)
	ctx := context.Background()
	var errs testutil.SyncBuffer
	f.r.Err = &errs
	f.io.with(func() {
		f.io.host("w1").memoryMB = 4096
		f.io.host("w3").memoryMB = 2048
	})
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w1 v1 deploy w3 v1]" {
		t.Errorf("env:startAll deployed %v; want w1 and w3 (w2 has 1024 MB)", got)
	}
	if !strings.Contains(errs.String(), "host w2: not used for role workers: not in class bigmem (memory_mb >= 2048)") {
		t.Errorf("stderr does not say why w2 is left out:\n%s", &errs)
	}
	if got := f.io.logged("facts "); len(got) != 4 {
		t.Errorf("facts gathered: %v; want once on each of the 4 hosts", got)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.EnvStatus(ctx, f.env))
	var st []statusRow
	if err := unmarshalRows(f.out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	for _, r := range st {
		if r.Name == "w2" && r.Health != "not used for workers: not in class bigmem (memory_mb >= 2048)" {
			t.Errorf("env:status w2: %+v", r)
		}
	}
	f.out.Reset()
	f.must(t, f.r.HostsQuery(ctx, f.env, "class:bigmem"))
	var rows []hostRow
	unmarshalRows(f.out.Bytes(), &rows)
	if len(rows) != 2 || rows[0].Name != "w1" || rows[1].Name != "w3" || rows[0].Attrs["memory_mb"][0] != "4096" || rows[0].Attrs["kernel"][0] != "6.1.0-fake" {
		t.Errorf("hosts:query class:bigmem: %s", f.out)
	}
	f.r.JSON = false
	// Once per boot: a second env:startAll gathers nothing; facts cannot
	// be set by hand.
	f.io.with(func() { f.io.log = nil })
	f.must(t, f.r.EnvStartAll(ctx, f.env))
	if got := f.io.logged("facts "); len(got) > 0 {
		t.Errorf("the second env:startAll gathered facts again: %v", got)
	}
	if err := f.r.HostsAttr(ctx, f.env, "w2", "set memory_mb 9999"); err == nil || !strings.Contains(err.Error(), "fills itself") {
		t.Errorf("hosts:attr set memory_mb: %v", err)
	}
}

// power:* works on hosts without a BMC, through their provider: status
// says on or off, off stops the host (the load balancer stops routing to
// it), on brings it back; a static host (someone else's) is refused.
func TestFake_PowerWithoutBMC(t *testing.T) {
	f, ctx := startedFake(t)
	power := func(what string) string {
		t.Helper()
		f.out.Reset()
		f.must(t, f.r.Power(ctx, what, f.env, "w2"))
		return strings.TrimSpace(f.out.String())
	}
	if got := power("status"); got != "w2: power on" {
		t.Errorf("power:status of a running host: %q", got)
	}
	power("off")
	if got := power("status"); got != "w2: power off" {
		t.Errorf("power:status after power:off: %q", got)
	}
	if st := f.states(t)["w2"]; st != "stopped" {
		t.Errorf("w2 is %s after power:off", st)
	}
	if r := f.routes("lb1"); strings.Contains(r, "w2") {
		t.Errorf("the load balancer still routes to w2 after power:off: %s", r)
	}
	power("on")
	if got := power("status"); got != "w2: power on" {
		t.Errorf("power:status after power:on: %q", got)
	}
	if err := f.r.Power(ctx, "status", f.env, "w9"); err == nil || !strings.Contains(err.Error(), "w9") {
		t.Errorf("power:status of an unknown host: %v", err)
	}
}

// hosts:rebuild: the load balancer stops routing to the host before it is
// deleted and routes to it again only once it is rebuilt, deployed and
// checked; the host comes back with a new host key, the version it ran
// (a deploy had moved it past the env file's), serving.
func TestFake_Rebuild(t *testing.T) {
	f, ctx := startedFake(t)
	f.must(t, f.r.ServiceDeploy(ctx, f.env, "hello", "v2"))
	key := func() string {
		var k string
		f.must(t, f.r.withEnv(ctx, f.env, func(s *session) error {
			h, err := s.Store.Host(ctx, f.env, "w2")
			k = h.HostKey
			return err
		}))
		return k
	}
	before := key()
	w2 := ""
	for _, in := range mustList(f.prov) {
		if in.Name == "w2" {
			w2 = in.Addr + ":8080"
		}
	}
	f.io.with(func() { f.io.log = nil })
	f.out.Reset()
	f.must(t, f.r.HostsRebuild(ctx, f.env, "w2"))
	if after := key(); after == before || after == "" {
		t.Errorf("w2's host key after the rebuild: %q (before: %q)", after, before)
	}
	w2new := ""
	for _, in := range mustList(f.prov) {
		if in.Name == "w2" {
			w2new = in.Addr + ":8080"
		}
	}
	deployed, back := -1, false
	for i, l := range f.io.logged("") {
		switch {
		case strings.HasPrefix(l, "deploy w2"):
			deployed = i
		case strings.HasPrefix(l, "lb ") && deployed < 0 && (strings.Contains(l, w2) || strings.Contains(l, w2new)):
			t.Errorf("the load balancer routed to w2 before it was deployed again: %s", l)
		case strings.HasPrefix(l, "lb ") && deployed >= 0 && strings.Contains(l, w2new):
			back = true
		}
	}
	if !back || !strings.Contains(f.io.logged("lb ")[0], "192.0.2.") || strings.Contains(f.io.logged("lb ")[0], w2) {
		t.Errorf("the rebuild's load-balancer updates: %v; want w2 out first, back after its deploy", f.io.logged("lb "))
	}
	if got := f.io.logged("deploy "); fmt.Sprint(got) != "[deploy w2 v2]" {
		t.Errorf("the rebuild deployed %v; want w2 back on v2, the version it ran", got)
	}
	calls := strings.Join(f.prov.Calls(), " ")
	if !strings.Contains(calls, "stop w2 delete w2 start w2") {
		t.Errorf("provider calls: %s; want w2 stopped, deleted, then made and started", calls)
	}
	if st := f.states(t)["w2"]; st != "serving" {
		t.Errorf("w2 is %s after the rebuild", st)
	}
	if !strings.Contains(f.out.String(), "w2: rebuilt in") {
		t.Errorf("no word of the rebuild:\n%s", f.out)
	}
}
