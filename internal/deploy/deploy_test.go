package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"booted/internal/config"
	"booted/internal/deploy"
	"booted/internal/fleet"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/remote"
	"booted/internal/service"
	"booted/internal/settings"
	"booted/internal/sitedio"
)

// root is the repository: its services/hello and nginx/lb.conf.tmpl.
const root = "../.."

// hosts is a fleet in memory: each host's service, a load balancer's
// configuration, a host whose health check fails.
type hosts struct {
	mu        sync.Mutex
	running   map[string]service.State
	lbConf    map[string]string
	unhealthy map[string]bool
	calls     []string
}

func (x *hosts) Each(ctx context.Context, hs []inventory.Host, opt remote.Options, step func(context.Context, fleet.Conn) error) []remote.Result {
	var out []remote.Result
	for _, h := range hs {
		c := &conn{x: x, h: h}
		r := remote.Result{Host: h.Name, Status: remote.OK}
		if err := step(ctx, c); err != nil {
			r.Status, r.Err, r.Error = remote.Failed, err, err.Error()
		} else {
			r.Note = c.note
		}
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
		out = append(out, r)
	}
	return out
}

func (x *hosts) record(s string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, s)
}

type conn struct {
	fleet.Conn // any other call panics
	x          *hosts
	h          inventory.Host
	note       string
}

func (c *conn) Host() inventory.Host { return c.h }
func (c *conn) Note(msg string)      { c.note = msg }
func (c *conn) Start(_ context.Context, def *service.Def, restart bool) (service.State, error) {
	c.x.record("start " + c.h.Name)
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	st := service.State{Running: true, Version: "v1", PID: 100 + len(c.x.calls)}
	c.x.running[c.h.Name] = st
	return st, nil
}
func (c *conn) Stop(_ context.Context, def *service.Def) (int, error) {
	c.x.record("stop " + c.h.Name)
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	pid := c.x.running[c.h.Name].PID
	delete(c.x.running, c.h.Name)
	return pid, nil
}
func (c *conn) Status(_ context.Context, def *service.Def) (service.State, error) {
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	return c.x.running[c.h.Name], nil
}
func (c *conn) ApplyLB(_ context.Context, conf []byte) (string, error) {
	c.x.record("lb " + c.h.Name)
	c.x.mu.Lock()
	defer c.x.mu.Unlock()
	c.x.lbConf[c.h.Name] = string(conf)
	return "reloaded", nil
}

// worker is the host halves' side: hello's definition, a health check
// that fails on the unhealthy hosts.
type worker struct{ x *hosts }

func (w worker) LoadService(name string) (*service.Def, error) { return service.Load(root, name) }
func (w worker) Artifacts() string                             { return "" }
func (w worker) WaitHealthy(_ context.Context, def *service.Def, h inventory.Host) error {
	if w.x.unhealthy[h.Name] {
		return errors.New("health check GET /healthz: connection refused")
	}
	return nil
}
func (w worker) Checks(context.Context, *service.Def, inventory.Host) []service.CheckResult {
	return nil
}
func (w worker) Get(context.Context, *service.Def, inventory.Host, string) (string, error) {
	return "", nil
}
func (w worker) Alive(context.Context, []inventory.Host, int) []error { return nil }
func (w worker) Provider(string) provider.Provider                    { return nil }

// fixture: w1 and w2 (workers, ready), lb1 (a load balancer, ready).
func fixture(t *testing.T) (*deploy.Env, *hosts, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	st, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(ctx, func(tx *inventory.Tx) error {
		for _, h := range []struct{ name, role, addr string }{{"w1", "workers", "10.0.0.1"}, {"w2", "workers", "10.0.0.2"}, {"lb1", "loadbalancers", "10.0.0.9"}} {
			if err := tx.Modify("e", h.name, func(x *inventory.Host) error { x.Role, x.Addr = h.role, h.addr; return nil }); err != nil {
				return err
			}
			for _, s := range []inventory.State{inventory.Booting, inventory.Booted, inventory.Ready} {
				if err := tx.Advance("e", h.name, s, ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	env := &config.Env{Name: "e", Roles: map[string]*config.Role{
		"workers": {Service: "hello"}, "loadbalancers": {},
	}}
	var out, errw bytes.Buffer
	x := &hosts{running: map[string]service.State{}, lbConf: map[string]string{}, unhealthy: map[string]bool{}}
	e := &deploy.Env{Env: env, Store: st, Ops: &hostops.Runner{Env: env, Store: st, Parallel: 4, Out: &out, Err: &errw},
		Sites: &sitedio.Split{Env: env, Here: x}, Worker: worker{x}, Settings: settings.Settings{Root: root, Parallel: 4}, Out: &out, Err: &errw}
	return e, x, &out
}

func state(t *testing.T, e *deploy.Env, name string) inventory.State {
	t.Helper()
	h, err := e.Store.Host(context.Background(), "e", name)
	if err != nil {
		t.Fatal(err)
	}
	return h.State
}

func workers(e *deploy.Env, t *testing.T) []inventory.Host {
	hs, err := e.Ops.Select(context.Background(), "workers", nil)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// A start serves the hosts whose health check passes, names the one whose
// does not, and points the load balancer at the serving ones only.
func TestStart_ServesTheHealthyAndPointsTheLB(t *testing.T) {
	e, x, _ := fixture(t)
	x.unhealthy["w2"] = true
	def, _ := e.Worker.LoadService("hello")
	err := e.Start(context.Background(), def, workers(e, t))
	if err == nil || !strings.Contains(err.Error(), "w2") {
		t.Fatalf("start: %v, want w2's failure named", err)
	}
	if s := state(t, e, "w1"); s != inventory.Serving {
		t.Errorf("w1 %s, want serving", s)
	}
	if s := state(t, e, "w2"); s != inventory.Ready {
		t.Errorf("w2 %s, want ready (unhealthy, not serving)", s)
	}
	conf := x.lbConf["lb1"]
	if !strings.Contains(conf, "server 10.0.0.1:8080 ") || strings.Contains(conf, "10.0.0.2") {
		t.Fatalf("lb1's configuration routes to:\n%s\nwant w1 (10.0.0.1:8080) only", conf)
	}
	if s := state(t, e, "lb1"); s != inventory.Serving {
		t.Errorf("lb1 %s, want serving once configured", s)
	}
}

// A stop drains first (the load balancer reloaded without the host before
// it stops), then the host is ready again, not running.
func TestStop_DrainsBeforeStopping(t *testing.T) {
	e, x, _ := fixture(t)
	def, _ := e.Worker.LoadService("hello")
	ctx := context.Background()
	if err := e.Start(ctx, def, workers(e, t)); err != nil {
		t.Fatal(err)
	}
	x.calls = nil
	w1 := workers(e, t)[:1]
	if err := e.Stop(ctx, def, w1); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(x.calls, ","); got != "lb lb1,stop w1" {
		t.Fatalf("calls %s, want the load balancer updated before w1 stops", got)
	}
	if strings.Contains(x.lbConf["lb1"], "10.0.0.1") || !strings.Contains(x.lbConf["lb1"], "10.0.0.2") {
		t.Fatalf("lb1 still routes to w1:\n%s", x.lbConf["lb1"])
	}
	if s := state(t, e, "w1"); s != inventory.Ready {
		t.Errorf("w1 %s, want ready", s)
	}
	if _, ok := x.running["w1"]; ok {
		t.Error("w1 still runs hello")
	}
}

// A dry run's plan says what each host would do and changes nothing.
func TestPlanService_ChangesNothing(t *testing.T) {
	e, x, out := fixture(t)
	e.DryRun, e.JSON = true, true
	def, _ := e.Worker.LoadService("hello")
	if err := e.Start(context.Background(), def, workers(e, t)); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Plan   string   `json:"plan"`
		DryRun bool     `json:"dryRun"`
		Steps  []string `json:"steps"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("plan %q: %v", out, err)
	}
	if p.Plan != "service:start hello" || !p.DryRun || len(p.Steps) != 3 || !strings.HasPrefix(p.Steps[0], "w1 (ready; not running): restart hello") || !strings.HasPrefix(p.Steps[2], "load balancers lb1:") {
		t.Fatalf("plan %+v", p)
	}
	if len(x.calls) != 0 || state(t, e, "w1") != inventory.Ready {
		t.Fatalf("a dry run acted: %v, w1 %s", x.calls, state(t, e, "w1"))
	}
}
