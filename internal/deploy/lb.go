package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"booted/internal/config"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/lb"
	"booted/internal/loadgen"
	"booted/internal/remote"
)

// LBPort is the port the load balancers listen on.
const LBPort = 80

// lbArgs are a load balancer job's: its configuration, rendered here.
type lbArgs struct {
	Conf []byte `json:"conf"`
}

// LBHosts returns the load balancer hosts that are up.
func (e *Env) LBHosts(ctx context.Context) ([]inventory.Host, error) {
	if e.Env.Roles[config.RoleLoadBalancers] == nil {
		return nil, nil
	}
	return e.Ops.Select(ctx, config.RoleLoadBalancers, func(h inventory.Host) bool {
		return h.State.Up()
	})
}

// UpdateLB points every load balancer at the workers now serving: the
// configuration is checked with nginx -t on each host before it replaces the
// running one, and a reload waits for the old nginx workers to finish their
// requests (so a worker taken out is drained when this returns). Its error
// wraps each load balancer's (lb.ErrRefused for a refused configuration).
func (e *Env) UpdateLB(ctx context.Context) error {
	wr := e.Env.Roles[config.RoleWorkers]
	if wr == nil || wr.Service == "" {
		return nil
	}
	lbs, err := e.LBHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return err
	}
	def, err := e.Worker.LoadService(wr.Service)
	if err != nil {
		return err
	}
	workers, err := e.Ops.Select(ctx, config.RoleWorkers, func(h inventory.Host) bool { return h.State == inventory.Serving })
	if err != nil {
		return err
	}
	var ups []string
	for _, w := range workers {
		ups = append(ups, net.JoinHostPort(w.Addr, strconv.Itoa(def.Port)))
	}
	tmpl := filepath.Join(e.Root, "nginx", "lb.conf.tmpl")
	confs := map[string][]byte{}
	for _, h := range lbs {
		conf, err := lb.Render(tmpl, lb.Config{Env: e.Env.Name, Host: h.Name, Service: def.Name, Listen: LBPort, Workers: ups})
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		confs[h.Name] = conf
	}
	// A site's load balancers are given their configuration by its
	// conductors; the inventory is written here.
	o, step := lbJob.Halves(jobs.Op{PerHost: func(h inventory.Host) json.RawMessage { b, _ := json.Marshal(lbArgs{Conf: confs[h.Name]}); return b }}, lbArgs{},
		func(ctx context.Context, c fleet.Conn) (string, error) {
			return lbApplyHost(confs[c.Host().Name])(ctx, c)
		},
		func(ctx context.Context, h inventory.Host, note string, err error) (string, error) {
			if err != nil {
				return "", err
			}
			return note, e.advance(ctx, h.Name, inventory.Serving, "")
		})
	results := e.Sites.Each(ctx, lbs, remote.Options{Parallel: e.Parallel, Timeout: e.Env.Timeouts.Command.D()}, o, step)
	if err := remote.Err(results); err != nil {
		return fmt.Errorf("load balancer update: %w", err)
	}
	return nil
}

// StopLB stops nginx on the load balancers.
func (e *Env) StopLB(ctx context.Context) error {
	lbs, err := e.LBHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return err
	}
	o, step := lbStopJob.Halves(jobs.Op{}, struct{}{}, lbStopHost,
		func(ctx context.Context, h inventory.Host, _ struct{}, err error) (string, error) {
			if err != nil || h.State != inventory.Serving {
				return "", err
			}
			return "", e.advance(ctx, h.Name, inventory.Ready, "")
		})
	_, err = e.op(ctx, "lb:stop", lbs, o, step)
	return err
}

// lbApplyHost gives a load balancer its configuration conf (a reload
// when it changed): the host's half of a load balancer update.
func lbApplyHost(conf []byte) jobs.Host[string] {
	return func(ctx context.Context, c fleet.Conn) (string, error) { return c.ApplyLB(ctx, conf) }
}

// lbStopHost stops nginx on a load balancer.
func lbStopHost(ctx context.Context, c fleet.Conn) (struct{}, error) {
	return struct{}{}, c.StopLB(ctx)
}

// routesHost reads which workers a load balancer routes to.
func routesHost(ctx context.Context, c fleet.Conn) ([]string, error) { return c.Routes(ctx) }

// Routes returns what each load balancer routes to now.
func (e *Env) Routes(ctx context.Context) map[string][]string {
	var mu sync.Mutex
	out := map[string][]string{}
	lbs, err := e.LBHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return out
	}
	o, step := routesJob.Halves(jobs.Op{}, struct{}{}, routesHost,
		func(_ context.Context, h inventory.Host, r []string, err error) (string, error) {
			if err == nil {
				mu.Lock()
				out[h.Name] = r
				mu.Unlock()
			}
			return "", err
		})
	// a quick read: a load balancer that does not answer within 10 s is left out
	e.Sites.Each(ctx, lbs, remote.Options{Parallel: e.Parallel, Timeout: 10 * time.Second}, o, step)
	return out
}

// LBURL is the URL of the first load balancer that is serving.
func (e *Env) LBURL(ctx context.Context) (string, error) {
	_, url, err := e.LBServing(ctx)
	return url, err
}

// LBServing is the first load balancer that is serving, and its URL.
func (e *Env) LBServing(ctx context.Context) (inventory.Host, string, error) {
	lbs, err := e.LBHosts(ctx)
	if err != nil {
		return inventory.Host{}, "", err
	}
	for _, h := range lbs {
		if h.State == inventory.Serving {
			return h, "http://" + net.JoinHostPort(h.Addr, strconv.Itoa(LBPort)), nil
		}
	}
	return inventory.Host{}, "", fmt.Errorf("%s: no load balancer is serving (env:startAll %s starts one)", e.Env.Name, e.Env.Name)
}

// loadRun is what a load run saw, latencies included.
type loadRun struct {
	Stats     loadgen.Stats   `json:"stats"`
	Latencies []time.Duration `json:"latencies"`
}

// loadHost sends o's requests (loadgen) from where it runs: the host's
// half of a load run sent from near load balancer lb (by its site's
// conductor; c is lb's connection, unused).
func loadHost(o loadgen.Options) jobs.Host[loadRun] {
	return func(ctx context.Context, _ fleet.Conn) (loadRun, error) {
		st, err := loadgen.Run(ctx, o)
		if st == nil {
			return loadRun{}, err
		}
		return loadRun{Stats: *st, Latencies: st.Latencies}, err
	}
}

// Load sends o's requests to the load balancer lb: from here, or, for a
// load balancer of a site (which this machine may not reach), from its
// site's conductor.
func (e *Env) Load(ctx context.Context, lb inventory.Host, o loadgen.Options) (*loadgen.Stats, error) {
	if e.Env.SiteOf(lb.Name, lb.Role) == "" {
		return loadgen.Run(ctx, o)
	}
	var run loadRun
	var runErr error
	opts, _ := loadJob.Halves(jobs.Op{}, o, nil, // no host here
		func(_ context.Context, _ inventory.Host, r loadRun, err error) (string, error) {
			run, runErr = r, err
			return "", err
		})
	res := e.Sites.Conducted(ctx, []inventory.Host{lb}, remote.Options{Parallel: 1, Timeout: o.Duration + 30*time.Second}, opts, nil)
	if runErr == nil && len(res) == 1 && res[0].Err != nil {
		runErr = res[0].Err
	}
	if runErr != nil {
		return nil, runErr
	}
	run.Stats.Latencies = run.Latencies
	return &run.Stats, nil
}
