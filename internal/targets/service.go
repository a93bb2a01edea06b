package targets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"booted/internal/jobs"
	"booted/internal/outcome"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/remote"
	"booted/internal/report"
	"booted/internal/rollout"
	"booted/internal/service"
)

// serviceHosts returns the hosts whose role runs svc, those sel selects
// (a role of the env file, or an expression; all when empty).
func (s *session) serviceHosts(ctx context.Context, svc, sel string) ([]inventory.Host, error) {
	role := sel
	if _, ok := s.env.Roles[sel]; !ok {
		role = "" // an expression, applied below
	}
	e, err := s.query().Selector(sel)
	if err != nil {
		return nil, err
	}
	roles := map[string]bool{}
	for name, r := range s.env.Roles {
		if r.Service == svc && (role == "" || role == name) {
			roles[name] = true
		}
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("%s: no role of %s runs %s (set roles.ROLE.service in the env file)", s.env.Path, s.env.Name, svc)
	}
	hosts, err := s.ops().Select(ctx, "", func(h inventory.Host) bool { return roles[h.Role] })
	if err == nil && role == "" {
		hosts, err = s.query().Matching(ctx, e, hosts)
	}
	if err != nil {
		return nil, err
	}
	return s.query().WithClasses(ctx, hosts)
}

// artifacts is where builds (and mirrors of services' repositories) are kept.
func (s *session) artifacts() string { return filepath.Join(s.r.Inventory, "artifacts") }

// buildArtifact builds (or takes from the cache) version of def, which
// Resolve gave as commit.
func (s *session) buildArtifact(ctx context.Context, def *service.Def, version, commit string) (*service.Artifact, error) {
	a, err := def.BuildCommit(ctx, s.r.Root, s.artifacts(), version, commit, io.Discard)
	if err != nil {
		return nil, err
	}
	if !s.r.JSON {
		fmt.Fprintf(s.r.Out, "%s %s: commit %s, sha256 %s\n", def.Name, version, a.Commit[:12], a.SHA256[:16])
	}
	return a, nil
}

// withService opens ENV of sel ("ENV" or "ENV/ROLE"), loads SVC and the
// hosts that run it, and calls fn.
func (r *Runner) withService(ctx context.Context, what, sel, svc string, fn func(s *session, def *service.Def, hosts []inventory.Host) error) error {
	envName, role := splitSel(sel)
	open := r.withEnv
	if what != "" { // it changes the hosts
		open = func(ctx context.Context, envName string, fn func(s *session) error) error {
			return r.withLock(ctx, envName, what+" "+sel+" "+svc, fn)
		}
	}
	return open(ctx, envName, func(s *session) error {
		def, err := s.loadService(svc)
		if err != nil {
			return err
		}
		if !r.DryRun {
			if err := s.recordKnown(ctx); err != nil {
				return err
			}
		}
		hosts, err := s.serviceHosts(ctx, svc, role)
		if err == nil {
			hosts, err = s.ops().Limited(hosts)
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
		fmt.Fprintf(s.r.Err, "%s: waiting for %s to come up (each up to the boot timeout, %v)\n", s.env.Name, strings.Join(coming, ", "), s.env.Timeouts.Boot.D())
		if err := s.logged(ctx); err != nil {
			return nil, err
		}
		if err := s.filter(ctx); err != nil {
			return nil, err
		}
	}
	var out []inventory.Host
	for _, h := range hosts {
		cur, err := s.store.Host(ctx, s.env.Name, h.Name)
		if err != nil {
			return nil, err
		}
		if cur.State.ComingUp() {
			fmt.Fprintf(s.r.Err, "host %s: skipped: still %s (hosts:logged %s waits for it)\n", cur.Name, cur.State, s.env.Name)
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
		return s.deploy(ctx, def, version, hosts)
	})
}

// deploy rolls version of def out to hosts (see package rollout).
func (s *session) deploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host) error {
	commit, err := def.Resolve(ctx, s.r.Root, s.artifacts(), version)
	if err != nil {
		return err // before anything is touched
	}
	size, err := rollout.ParseBatch(s.r.Batch)
	if err != nil {
		return err
	}
	if s.r.DryRun {
		return s.planDeploy(ctx, def, version, hosts, size)
	}
	title := "service:deploy " + def.Name
	hosts, err = s.ops().RetryFilter(ctx, title, hosts)
	if err != nil || len(hosts) == 0 {
		return err
	}
	a, err := s.buildArtifact(ctx, def, version, commit)
	if err != nil {
		return err
	}
	// A host already serving this very build is left alone: no drain, no
	// load-balancer reload, no restart (a no-op deploy costs a status
	// read per host).
	before := s.serviceStates(ctx, def, hosts)
	var change []inventory.Host
	var same []remote.Result
	for _, h := range hosts {
		st := before[h.Name]
		if h.State == inventory.Serving && st.Running && st.Version == a.Version && st.SHA256 == a.SHA256 {
			same = append(same, remote.Result{Host: h.Name, Status: remote.OK, Note: fmt.Sprintf("unchanged: serving %s %s already, pid %d", def.Name, a.Version, st.PID)})
			continue
		}
		change = append(change, h)
	}
	if len(same) > 0 {
		report.Recap(s.r.Out, title+" "+a.Version+" (unchanged hosts)", same, s.r.JSON)
	}
	if len(change) == 0 {
		return s.ops().SaveFailed(ctx, title, nil)
	}
	hosts = change
	x := &deployer{s: s, def: def, a: a, byName: byName(hosts), before: before}
	rep, err := rollout.Run(ctx, title+" "+a.Version, rollout.Plan(hostNames(hosts), size), x)
	if serr := s.ops().SaveFailed(ctx, title, append(rep.Failed, rep.Unreachable...)); err == nil {
		err = serr
	}
	if err != nil || len(rep.Unreachable) == 0 {
		return err
	}
	return &outcome.HostsError{Title: title + " " + a.Version, Total: len(hosts), Hosts: rep.Unreachable}
}

// serviceStates reads the service's state on each host (a host that
// cannot be read is missing: it is changed, and reported, by the rollout);
// a site's hosts are read by its conductors.
func (s *session) serviceStates(ctx context.Context, def *service.Def, hosts []inventory.Host) map[string]service.State {
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
	s.each(ctx, hosts, remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.Command.D()}, o, step)
	return out
}

// statusHost reads def's service's state on the host.
func statusHost(def *service.Def) jobs.Host[service.State] {
	return func(ctx context.Context, c hostConn) (service.State, error) { return c.Status(ctx, def) }
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
	return func(ctx context.Context, c hostConn) ([]checkWire, error) {
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

// deployer carries a deploy's rollout out on the hosts.
type deployer struct {
	s      *session
	def    *service.Def
	a      *service.Artifact
	byName map[string]inventory.Host
	// before is each host's service as the deploy found it.
	before map[string]service.State
}

var _ rollout.Executor = (*deployer)(nil)

func (d *deployer) hosts(names []string) []inventory.Host {
	out := make([]inventory.Host, 0, len(names))
	for _, n := range names {
		out = append(out, d.byName[n])
	}
	return out
}

func (d *deployer) Drain(ctx context.Context, names []string) error {
	return d.s.drain(ctx, d.hosts(names))
}
func (d *deployer) UpdateLB(ctx context.Context) error { return d.s.updateLB(ctx) }

func (d *deployer) Rollback(ctx context.Context, names []string) error {
	return d.s.rollback(ctx, d.def, d.hosts(names), "roll back after a failed deploy")
}

// Change uploads the release where missing, switches to it, restarts the
// service and checks it, on each host of the batch: here, or through the
// conductors of the hosts' sites (the env file's sites), which do the same
// on the host; the inventory is written here from what they say.
func (d *deployer) Change(ctx context.Context, title string, names []string) (map[string]rollout.Result, error) {
	var mu sync.Mutex
	outcomes := map[string]deployOutcome{}
	keep := func(h string, out deployOutcome) {
		mu.Lock()
		outcomes[h] = out
		mu.Unlock()
	}
	o, step := deployJob.Halves(jobs.Op{Live: true, KeepList: true,
		BeforeJobs: func(ctx context.Context, js jetstream.JetStream) error {
			return conductor.PutArtifact(ctx, js, artifactObject(d.a), d.a.Path, d.a.SHA256)
		}}, deployArgs{Service: d.def.Name, Version: d.a.Version, Commit: d.a.Commit, SHA256: d.a.SHA256, Object: artifactObject(d.a)},
		deployHost(worker{d.s}, d.def, d.a),
		func(ctx context.Context, h inventory.Host, out deployOutcome, err error) (string, error) {
			keep(h.Name, out)
			if rerr := d.s.recordDeploy(ctx, h, out); err == nil {
				err = rerr
			}
			if err != nil {
				return "", err
			}
			return d.note(h, out), nil
		})
	results, err := d.s.op(ctx, title, d.hosts(names), o, step)
	out := map[string]rollout.Result{}
	for _, r := range results {
		st := rollout.OK
		switch r.Status {
		case remote.Unreachable, remote.Skipped:
			st = rollout.Unreachable
		case remote.Failed:
			st = rollout.Failed
		}
		out[r.Host] = rollout.Result{Status: st, Switched: outcomes[r.Host].Switched}
	}
	return out, err
}

// note says what a deploy did on h: old → new version, uploaded or not.
func (d *deployer) note(h inventory.Host, out deployOutcome) string {
	what := d.def.Name + " " + d.a.Version // it ran this version already (not serving, or another build)
	if old := d.before[h.Name]; !old.Running {
		what = fmt.Sprintf("%s (not running) → %s", d.def.Name, d.a.Version)
	} else if old.Version != d.a.Version {
		what = fmt.Sprintf("%s %s → %s", d.def.Name, old.Version, d.a.Version)
	}
	if out.Uploaded {
		what += ", uploaded"
	} else {
		what += ", release already on the host"
	}
	return fmt.Sprintf("%s, pid %d", what, out.PID)
}

// deployArgs are a deploy job's: the service and its release (in the
// artifacts' object store as Object).
type deployArgs struct {
	Service string `json:"service"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	SHA256  string `json:"sha256"`
	Object  string `json:"object"`
}

// deployOutcome is what a deploy did on a host.
type deployOutcome struct {
	Switched    bool `json:"switched"`
	Uploaded    bool `json:"uploaded"`
	PID         int  `json:"pid"`
	Healthy     bool `json:"healthy"`
	CheckFailed bool `json:"checkFailed"`
}

func artifactObject(a *service.Artifact) string { return a.Service + "-" + a.SHA256 }

// deployHost puts release a of def on the host and switches to it,
// (re)starts the service, waits for its health check and runs its checks:
// the host's half of a deploy. It writes nothing in the inventory
// (recordDeploy does, on the controller).
func deployHost(w jobs.Worker, def *service.Def, a *service.Artifact) jobs.Host[deployOutcome] {
	return func(ctx context.Context, c hostConn) (deployOutcome, error) {
		var out deployOutcome
		uploaded, err := c.Deploy(ctx, def, a)
		if err != nil {
			return out, err
		}
		out.Switched, out.Uploaded = true, uploaded
		st, err := startHost(w, def, false)(ctx, c)
		out.PID = st.PID
		if err != nil {
			return out, err
		}
		out.Healthy = true
		h := c.Host()
		for _, cr := range w.Checks(ctx, def, h) {
			if cr.Err != nil {
				out.CheckFailed = true
				return out, fmt.Errorf("host %s: check %q failed: %w", h.Name, cr.Check.Name, cr.Err)
			}
		}
		return out, nil
	}
}

// recordDeploy writes what a deploy did on h in the inventory: serving
// once healthy, draining again when a check failed.
func (s *session) recordDeploy(ctx context.Context, h inventory.Host, out deployOutcome) error {
	if !out.Healthy {
		return nil
	}
	if err := s.advance(ctx, h.Name, inventory.Serving, ""); err != nil {
		return err
	}
	if out.CheckFailed {
		return s.advance(context.WithoutCancel(ctx), h.Name, inventory.Draining, "")
	}
	return nil
}

func byName(hosts []inventory.Host) map[string]inventory.Host {
	m := make(map[string]inventory.Host, len(hosts))
	for _, h := range hosts {
		m[h.Name] = h
	}
	return m
}

func hostNames(hosts []inventory.Host) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h.Name
	}
	return out
}

// drain takes the serving hosts among hosts out of the load balancers.
func (s *session) drain(ctx context.Context, hosts []inventory.Host) error {
	n := 0
	for _, h := range hosts {
		if h.State == inventory.Serving {
			if err := s.advance(ctx, h.Name, inventory.Draining, ""); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return s.updateLB(ctx)
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
	return func(ctx context.Context, c hostConn) (rollbackOutcome, error) {
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

// rollback switches hosts back to their previous release and restarts it.
func (s *session) rollback(ctx context.Context, def *service.Def, hosts []inventory.Host, title string) error {
	o, step := rollbackJob.Halves(jobs.Op{Live: true, KeepList: true}, serviceArgs{Service: def.Name}, rollbackHost(worker{s}, def),
		func(ctx context.Context, h inventory.Host, out rollbackOutcome, err error) (string, error) {
			if err != nil {
				return "", err
			}
			if out.NoPrevious {
				note := "nothing to roll back: it has had one release only"
				// untouched: back in service if it was taken out for this
				if cur, err := s.store.Host(ctx, s.env.Name, h.Name); err != nil || cur.State != inventory.Draining {
					return note, err
				}
				return note, s.advance(ctx, h.Name, inventory.Serving, "")
			}
			return fmt.Sprintf("back on %s, pid %d", out.Version, out.PID), s.advance(ctx, h.Name, inventory.Serving, "")
		})
	_, err := s.op(context.WithoutCancel(ctx), title, hosts, o, step)
	return err
}

// ServiceRollback switches every host of ENV running SVC back to its
// previous release, one batch at a time (BOOTED_BATCH), each out of the load
// balancer while it restarts.
func (r *Runner) ServiceRollback(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:rollback", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		size, err := rollout.ParseBatch(s.r.Batch)
		if err != nil {
			return err
		}
		if s.r.DryRun {
			return s.planService(ctx, "service:rollback", def, hosts)
		}
		hb := byName(hosts)
		for _, names := range rollout.Plan(hostNames(hosts), size) {
			b := make([]inventory.Host, len(names))
			for i, n := range names {
				b[i] = hb[n]
			}
			if err := s.drain(ctx, b); err != nil {
				return err
			}
			err := s.rollback(ctx, def, b, "service:rollback "+def.Name)
			if err := errors.Join(err, s.updateLB(ctx)); err != nil {
				return err
			}
		}
		return nil
	})
}

// startHost starts (or restarts) the service on the host and waits for
// its health check: the host's half of a start.
func startHost(w jobs.Worker, def *service.Def, restart bool) jobs.Host[service.State] {
	return func(ctx context.Context, c hostConn) (service.State, error) {
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

// ServiceStart (re)starts SVC on every host of ENV that runs it.
func (r *Runner) ServiceStart(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:start", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		if s.r.DryRun {
			return s.planService(ctx, "service:start", def, hosts)
		}
		o, step := startJob.Halves(jobs.Op{Live: true}, serviceArgs{Service: def.Name, Restart: true}, startHost(worker{s}, def, true),
			func(ctx context.Context, h inventory.Host, st service.State, err error) (string, error) {
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("running %s, pid %d", st.Version, st.PID), s.advance(ctx, h.Name, inventory.Serving, "")
			})
		_, err := s.op(ctx, "service:start "+svc, hosts, o, step)
		return errors.Join(err, s.updateLB(ctx))
	})
}

// ServiceStop stops SVC on every host of ENV that runs it.
func (r *Runner) ServiceStop(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "service:stop", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		if s.r.DryRun {
			return s.planService(ctx, "service:stop", def, hosts)
		}
		return s.stopService(ctx, def, hosts)
	})
}

func (s *session) stopService(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
	if err := s.drain(ctx, hosts); err != nil {
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
			cur, err := s.store.Host(ctx, s.env.Name, h.Name)
			if err != nil || cur.State != inventory.Draining {
				return note, err // only a host taken out of service is ready again
			}
			return note, s.advance(ctx, h.Name, inventory.Ready, "")
		})
	_, err := s.op(ctx, "service:stop "+def.Name, hosts, o, step)
	return err
}

// stopHost stops the service on the host: the host's half of a stop; the
// PID it had (0: it was not running).
func stopHost(def *service.Def) jobs.Host[int] {
	return func(ctx context.Context, c hostConn) (int, error) { return c.Stop(ctx, def) }
}

// ServiceTest runs the checks of SVC's service.yaml against every host of
// ENV that runs it; it fails if any check fails, and writes JUnit XML to
// BOOTED_JUNIT when set.
func (r *Runner) ServiceTest(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		return s.test(ctx, def, hosts)
	})
}

func (s *session) test(ctx context.Context, def *service.Def, hosts []inventory.Host) error {
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
	o, step := checksJob.Halves(jobs.Op{Live: true}, serviceArgs{Service: def.Name}, checksHost(worker{s}, def),
		func(_ context.Context, h inventory.Host, ws []checkWire, err error) (string, error) {
			if err != nil {
				return "", err // the job failed before its checks
			}
			return add(h.Name, fromWire(h.Name, ws))
		})
	_, err := s.op(ctx, "service:test "+def.Name, hosts, o, step)
	if s.r.JUnit != "" {
		if jerr := run.WriteJUnit(s.r.JUnit, def.Name, hostNames(hosts)); jerr != nil {
			return errors.Join(err, fmt.Errorf("write JUnit %s: %w", s.r.JUnit, jerr))
		}
	}
	return err
}

// ServiceLogs prints the last lines of SVC's log on every host of ENV
// (ENV/ROLE, BOOTED_LIMIT), each line prefixed by its host; with
// BOOTED_FOLLOW=1 it follows them (tail -F) until Ctrl-C, which ends it
// cleanly, not as a failure.
func (r *Runner) ServiceLogs(ctx context.Context, sel, svc string) error {
	return r.withService(ctx, "", sel, svc, func(s *session, def *service.Def, hosts []inventory.Host) error {
		out := report.NewHostOutput(r.Out, r.Err, hostNames(hosts))
		var results []remote.Result
		o, step := logsJob.Halves(jobs.Op{}, serviceArgs{Service: def.Name, Follow: r.Follow}, logsHost(def, r.Follow),
			func(_ context.Context, _ inventory.Host, _ struct{}, err error) (string, error) { return "", err })
		opt := remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.Command.D(), Output: out.Writers,
			OnDone: func(r remote.Result) { out.Flush(r.Host) }}
		if r.Follow { // every host at once, until Ctrl-C; a site's hosts' lines sent by its conductors as they come
			opt.Parallel, opt.Timeout, o.Job.Stream = len(hosts), 24*time.Hour, true
		}
		results = s.each(ctx, hosts, opt, o, step)
		if r.Follow && ctx.Err() != nil {
			return nil // Ctrl-C: the end of following, not a failure
		}
		var bad []string
		for _, res := range results {
			if res.Status != remote.OK {
				bad = append(bad, fmt.Sprintf("%s (%s)", res.Host, res.Error))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("service:logs %s: no log from %s", svc, strings.Join(bad, ", "))
		}
		return nil
	})
}

// logsHost prints the last 100 lines of def's log on the host and, with
// follow, the lines written after them until it is stopped.
func logsHost(def *service.Def, follow bool) jobs.Host[struct{}] {
	cmd := "tail -n 100 -- " + def.LogFile()
	if follow {
		cmd = "tail -n 100 -F -- " + def.LogFile() + " 2>/dev/null"
	}
	return func(ctx context.Context, c hostConn) (struct{}, error) { return struct{}{}, c.Run(ctx, cmd) }
}
