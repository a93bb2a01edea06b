package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"booted/internal/fanout"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/report"
	"booted/internal/rollout"
	"booted/internal/service"
)

// States reads the service's state on each host (a host that
// cannot be read is missing: it is changed, and reported, by the rollout);
// a site's hosts are read by its conductors.
func (e *Env) States(ctx context.Context, def *service.Def, hosts []inventory.Host) map[string]service.State {
	var mu sync.Mutex
	out := map[string]service.State{}
	keep := func(h string, st service.State) {
		mu.Lock()
		out[h] = st
		mu.Unlock()
	}
	o, step := statusJob.Halves(jobs.Op{}, serviceArgs{Service: def.Name},
		statusHost(def),
		func(_ context.Context, h inventory.Host, st service.State, err error) (string, error) {
			if err == nil {
				keep(h.Name, st)
			}
			return "", err
		})
	e.Sites.Each(ctx, hosts, remote.Options{Parallel: e.Parallel, Timeout: e.Env.Timeouts.Command.D()}, o, step)
	return out
}

// statusHost reads def's service's state on the host.
func statusHost(def *service.Def) jobs.Host[service.State] {
	return func(ctx context.Context, c fleet.Conn) (service.State, error) { return c.Status(ctx, def) }
}

// serviceArgs are the arguments of a job on a service (status, checks,
// start, stop, rollback, logs).
type serviceArgs struct {
	Service string `json:"service"`
	// Restart: a start restarts the service when it runs.
	Restart bool `json:"restart,omitempty"`
	// Within bounds a health check (0: the job's timeout).
	Within time.Duration `json:"within,omitempty"`
	// Follow: logs are followed until the job is stopped.
	Follow bool `json:"follow,omitempty"`
}

// healthCheck asks h's service its health check, once, within timeout (0:
// ctx's).
func healthCheck(ctx context.Context, w jobs.Worker, def *service.Def, h inventory.Host, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	_, err := w.Get(ctx, def, h, def.Health.Path)
	return err
}

// checkWire is a check's result as a conductor sends it.
type checkWire struct {
	Check   service.Check `json:"check"`
	Seconds float64       `json:"seconds"`
	Error   string        `json:"error,omitempty"`
}

func toWire(rr []service.CheckResult) []checkWire {
	out := make([]checkWire, len(rr))
	for i, r := range rr {
		out[i] = checkWire{Check: r.Check, Seconds: r.Duration.Seconds()}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
	}
	return out
}

// checksHost runs def's checks against the host: the host's half of
// service:test (failed checks are the controller's to judge).
func checksHost(w jobs.Worker, def *service.Def) jobs.Host[[]checkWire] {
	return func(ctx context.Context, c fleet.Conn) ([]checkWire, error) {
		return toWire(w.Checks(ctx, def, c.Host())), nil
	}
}

func fromWire(host string, ws []checkWire) []service.CheckResult {
	out := make([]service.CheckResult, len(ws))
	for i, w := range ws {
		out[i] = service.CheckResult{Check: w.Check, Host: host, Duration: time.Duration(w.Seconds * float64(time.Second))}
		if w.Error != "" {
			out[i].Err = errors.New(w.Error)
		}
	}
	return out
}

// Drain takes the serving hosts among hosts out of the load balancers.
func (e *Env) Drain(ctx context.Context, hosts []inventory.Host) error {
	n := 0
	for _, h := range hosts {
		if h.State == inventory.Serving {
			if err := e.advance(ctx, h.Name, inventory.Draining, ""); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return e.UpdateLB(ctx)
}

// rollbackOutcome is what a rollback did on a host.
type rollbackOutcome struct {
	// NoPrevious: the host has had one release only; nothing was done.
	NoPrevious bool   `json:"noPrevious,omitempty"`
	Version    string `json:"version,omitempty"`
	PID        int    `json:"pid,omitempty"`
}

// rollbackHost switches the host back to its previous release and
// restarts it, waiting for its health check: the host's half of a
// rollback (not done twice: a second would go back one more release).
func rollbackHost(w jobs.Worker, def *service.Def) jobs.Host[rollbackOutcome] {
	return func(ctx context.Context, c fleet.Conn) (rollbackOutcome, error) {
		v, err := c.Rollback(ctx, def)
		if errors.Is(err, service.ErrNoPrevious) {
			return rollbackOutcome{NoPrevious: true}, nil
		}
		if err != nil {
			return rollbackOutcome{}, err
		}
		st, err := startHost(w, def, true)(ctx, c)
		return rollbackOutcome{Version: v, PID: st.PID}, err
	}
}

// Rollback switches hosts back to their previous release and restarts it.
func (e *Env) Rollback(ctx context.Context, def *service.Def, hosts []inventory.Host, title string) error {
	o, step := rollbackJob.Halves(jobs.Op{Live: true, KeepList: true}, serviceArgs{Service: def.Name}, rollbackHost(e.Worker, def),
		func(ctx context.Context, h inventory.Host, out rollbackOutcome, err error) (string, error) {
			if err != nil {
				return "", err
			}
			if out.NoPrevious {
				note := "nothing to roll back: it has had one release only"
				// untouched: back in service if it was taken out for this
				if cur, err := e.Store.Host(ctx, e.Env.Name, h.Name); err != nil || cur.State != inventory.Draining {
					return note, err
				}
				return note, e.advance(ctx, h.Name, inventory.Serving, "")
			}
			return fmt.Sprintf("back on %s, pid %d", out.Version, out.PID), e.advance(ctx, h.Name, inventory.Serving, "")
		})
	_, err := e.op(context.WithoutCancel(ctx), title, hosts, o, step)
	return err
}

// startHost starts (or restarts) the service on the host and waits for
// its health check: the host's half of a start.
func startHost(w jobs.Worker, def *service.Def, restart bool) jobs.Host[service.State] {
	return func(ctx context.Context, c fleet.Conn) (service.State, error) {
		st, err := c.Start(ctx, def, restart)
		if err != nil {
			return st, err
		}
		h := c.Host()
		if err := w.WaitHealthy(ctx, def, h); err != nil {
			return st, fmt.Errorf("host %s: %s %s started (pid %d) but %w", h.Name, def.Name, st.Version, st.PID, err)
		}
		return st, nil
	}
}

// Stop drains hosts from the load balancers and stops def's service on
// them; a host taken out of service for this is ready again.
func (e *Env) Stop(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	if err := e.Drain(ctx, hosts); err != nil {
		return err
	}
	o, step := stopJob.Halves(jobs.Op{Live: true}, serviceArgs{Service: def.Name}, stopHost(def),
		func(ctx context.Context, h inventory.Host, pid int, err error) (string, error) {
			if err != nil {
				return "", err
			}
			note := "not running"
			if pid != 0 {
				note = fmt.Sprintf("stopped (was pid %d)", pid)
			}
			cur, err := e.Store.Host(ctx, e.Env.Name, h.Name)
			if err != nil || cur.State != inventory.Draining {
				return note, err // only a host taken out of service is ready again
			}
			return note, e.advance(ctx, h.Name, inventory.Ready, "")
		})
	_, err := e.op(ctx, "service:stop "+def.Name, hosts, o, step)
	return err
}

// stopHost stops the service on the host: the host's half of a stop; the
// PID it had (0: it was not running).
func stopHost(def *service.Def) jobs.Host[int] {
	return func(ctx context.Context, c fleet.Conn) (int, error) { return c.Stop(ctx, def) }
}

// Test runs def's checks (service.yaml) against hosts; it fails if any
// check fails, and writes JUnit XML to BOOTED_JUNIT when set.
func (e *Env) Test(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	run := service.Run{Started: time.Now()}
	add := func(h string, rr []service.CheckResult) (string, error) {
		err := run.Add(h, rr)
		passed := 0
		for _, cr := range rr {
			if cr.Err == nil {
				passed++
			}
		}
		return fmt.Sprintf("%d/%d checks passed", passed, len(rr)), err
	}
	o, step := checksJob.Halves(jobs.Op{Live: true}, serviceArgs{Service: def.Name}, checksHost(e.Worker, def),
		func(_ context.Context, h inventory.Host, ws []checkWire, err error) (string, error) {
			if err != nil {
				return "", err // the job failed before its checks
			}
			return add(h.Name, fromWire(h.Name, ws))
		})
	_, err := e.op(ctx, "service:test "+def.Name, hosts, o, step)
	if e.JUnit != "" {
		if jerr := run.WriteJUnit(e.JUnit, def.Name, hostNames(hosts)); jerr != nil {
			return errors.Join(err, fmt.Errorf("write JUnit %s: %w", e.JUnit, jerr))
		}
	}
	return err
}

// logsHost prints the last 100 lines of def's log on the host and, with
// follow, the lines written after them until it is stopped.
func logsHost(def *service.Def, follow bool) jobs.Host[struct{}] {
	cmd := "tail -n 100 -- " + def.LogFile()
	if follow {
		cmd = "tail -n 100 -F -- " + def.LogFile() + " 2>/dev/null"
	}
	return func(ctx context.Context, c fleet.Conn) (struct{}, error) { return struct{}{}, c.Run(ctx, cmd) }
}

// RollbackBatches switches hosts back to their previous release, one
// batch at a time (BOOTED_BATCH), each out of the load balancer while it
// restarts.
func (e *Env) RollbackBatches(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	size, err := rollout.ParseBatch(e.Batch)
	if err != nil {
		return err
	}
	if e.DryRun {
		return e.PlanService(ctx, "service:rollback", def, hosts)
	}
	hb := byName(hosts)
	for _, names := range rollout.Plan(hostNames(hosts), size) {
		b := make([]inventory.Host, len(names))
		for i, n := range names {
			b[i] = hb[n]
		}
		if err := e.Drain(ctx, b); err != nil {
			return err
		}
		err := e.Rollback(ctx, def, b, "service:rollback "+def.Name)
		if err := errors.Join(err, e.UpdateLB(ctx)); err != nil {
			return err
		}
	}
	return nil
}

// Start (re)starts def's service on hosts, each serving once its health
// check passes, and updates the load balancers.
func (e *Env) Start(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	if e.DryRun {
		return e.PlanService(ctx, "service:start", def, hosts)
	}
	o, step := startJob.Halves(jobs.Op{Live: true}, serviceArgs{Service: def.Name, Restart: true}, startHost(e.Worker, def, true),
		func(ctx context.Context, h inventory.Host, st service.State, err error) (string, error) {
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("running %s, pid %d", st.Version, st.PID), e.advance(ctx, h.Name, inventory.Serving, "")
		})
	_, err := e.op(ctx, "service:start "+def.Name, hosts, o, step)
	return errors.Join(err, e.UpdateLB(ctx))
}

// Logs prints the last lines of def's log on every host, each line
// prefixed by its host; with follow (BOOTED_FOLLOW=1) it follows them
// (tail -F) until ctx ends, which ends it cleanly, not as a failure.
func (e *Env) Logs(ctx context.Context, def *service.Def, hosts []inventory.Host, follow bool) error {
	out := report.NewHostOutput(e.Out, e.Err, hostNames(hosts))
	o, step := logsJob.Halves(jobs.Op{}, serviceArgs{Service: def.Name, Follow: follow}, logsHost(def, follow),
		func(_ context.Context, _ inventory.Host, _ struct{}, err error) (string, error) { return "", err })
	opt := remote.Options{Parallel: e.Parallel, Timeout: e.Env.Timeouts.Command.D(), Output: out.Writers,
		OnDone: func(r remote.Result) { out.Flush(r.Host) }}
	if follow { // every host at once, until Ctrl-C; a site's hosts' lines sent by its conductors as they come
		opt.Parallel, opt.Timeout, o.Job.Stream = len(hosts), 24*time.Hour, true
	}
	results := e.Sites.Each(ctx, hosts, opt, o, step)
	if follow && ctx.Err() != nil {
		return nil // Ctrl-C: the end of following, not a failure
	}
	var bad []string
	for _, res := range results {
		if res.Status != remote.OK {
			bad = append(bad, fmt.Sprintf("%s (%s)", res.Host, res.Error))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("service:logs %s: no log from %s", def.Name, strings.Join(bad, ", "))
	}
	return nil
}

// Healthy asks each host's service its health check, once, within
// timeout (the monitor's probe: at most BOOTED_PARALLEL at once), here or,
// for a host of a site, through its conductors; errs[i] for hosts[i].
func (e *Env) Healthy(ctx context.Context, def *service.Def, hosts []inventory.Host, timeout time.Duration) []error {
	o, _ := healthJob.Halves(jobs.Op{}, serviceArgs{Service: def.Name, Within: timeout}, nil, // no connection here: an HTTP check
		func(_ context.Context, _ inventory.Host, _ struct{}, err error) (string, error) { return "", err })
	return e.Sites.Checked(ctx, hosts, remote.Options{Parallel: e.Parallel, Timeout: timeout}, o,
		func(ctx context.Context, here []inventory.Host) []error {
			ok := fanout.Map(ctx, here, e.Parallel, func(ctx context.Context, h inventory.Host) bool { // false: unhealthy, or not asked (the context ended)
				return healthCheck(ctx, e.Worker, def, h, timeout) == nil
			})
			errs := make([]error, len(here))
			for i, h := range here {
				if !ok[i] {
					errs[i] = fmt.Errorf("host %s: not healthy", h.Name)
				}
			}
			return errs
		})
}
