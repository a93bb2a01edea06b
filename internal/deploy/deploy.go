// Package deploy carries a service's versions to an environment's hosts
// and keeps the load balancers in front of them: deploys (a rollout in
// batches, each drained, switched, restarted, checked, rolled back when it
// fails), rollbacks, starts, stops, checks (service:test), logs, the load
// balancers' configuration, routes and load runs, and the dry-run plans of
// each. Every step is a job (package jobs) whose host half runs here or
// on a conductor of the host's site (sitedio); the inventory is written
// here, from what the host halves returned.
package deploy

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/fleet"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/outcome"
	"booted/internal/remote"
	"booted/internal/report"
	"booted/internal/rollout"
	"booted/internal/service"
	"booted/internal/settings"
	"booted/internal/sitedio"
)

// Store is what deploy reads and writes of the inventory: a host, and
// its moves along the lifecycle (inventory.Store).
type Store interface {
	Host(ctx context.Context, env, name string) (inventory.Host, error)
	Advance(ctx context.Context, env, name string, to inventory.State, reason string) error
	Update(ctx context.Context, fn func(tx *inventory.Tx) error) error
}

// Env is an environment's services and load balancers as an operation
// sees them (the session fills it once per environment it opens).
type Env struct {
	Env   *config.Env
	Store Store
	// Ops selects hosts and runs operations over them (BOOTED_LIMIT,
	// BOOTED_RETRY, the display, the recap).
	Ops *hostops.Runner
	// Sites works on a host here or through its site's conductors.
	Sites *sitedio.Split
	// Worker is what the host halves use here.
	Worker jobs.Worker
	// Settings: Root (services/, nginx/lb.conf.tmpl), Batch, DryRun,
	// JSON, Parallel, JUnit.
	settings.Settings
	Out, Err io.Writer
}

// advance moves a host to a state by the lifecycle's path.
func (e *Env) advance(ctx context.Context, name string, to inventory.State, reason string) error {
	return e.Store.Advance(ctx, e.Env.Name, name, to, reason)
}

// op runs step on hosts as an operation (hostops.Runner.Run): the hosts
// of a site through its conductors when o has a job, the others here.
func (e *Env) op(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
	return e.Ops.Run(ctx, title, hosts, o.Show(), func(ctx context.Context, hosts []inventory.Host, opt remote.Options) []remote.Result {
		return e.Sites.Each(ctx, hosts, opt, o, step)
	})
}

// buildArtifact builds (or takes from the cache) version of def, which
// Resolve gave as commit.
func (e *Env) buildArtifact(ctx context.Context, def *service.Def, version, commit string) (*service.Artifact, error) {
	a, err := def.BuildCommit(ctx, e.Root, e.Worker.Artifacts(), version, commit, io.Discard)
	if err != nil {
		return nil, err
	}
	if !e.JSON {
		fmt.Fprintf(e.Out, "%s %s: commit %s, sha256 %s\n", def.Name, version, a.Commit[:12], a.SHA256[:16])
	}
	return a, nil
}

// Deploy rolls version of def out to hosts (see package rollout).
func (e *Env) Deploy(ctx context.Context, def *service.Def, version string, hosts []inventory.Host) error {
	commit, err := def.Resolve(ctx, e.Root, e.Worker.Artifacts(), version)
	if err != nil {
		return err // before anything is touched
	}
	size, err := rollout.ParseBatch(e.Batch)
	if err != nil {
		return err
	}
	if e.DryRun {
		return e.PlanDeploy(ctx, def, version, hosts, size)
	}
	title := "service:deploy " + def.Name
	hosts, err = e.Ops.RetryFilter(ctx, title, hosts)
	if err != nil || len(hosts) == 0 {
		return err
	}
	a, err := e.buildArtifact(ctx, def, version, commit)
	if err != nil {
		return err
	}
	// A host already serving this very build is left alone: no drain, no
	// load-balancer reload, no restart (a no-op deploy costs a status
	// read per host).
	before := e.States(ctx, def, hosts)
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
		report.Recap(e.Out, title+" "+a.Version+" (unchanged hosts)", same, e.JSON)
	}
	if len(change) == 0 {
		return e.Ops.SaveFailed(ctx, title, nil)
	}
	hosts = change
	x := &rollouter{e: e, def: def, a: a, byName: byName(hosts), before: before}
	rep, err := rollout.Run(ctx, title+" "+a.Version, rollout.Plan(hostNames(hosts), size), x)
	if serr := e.Ops.SaveFailed(ctx, title, append(rep.Failed, rep.Unreachable...)); err == nil {
		err = serr
	}
	if err != nil || len(rep.Unreachable) == 0 {
		return err
	}
	return &outcome.HostsError{Title: title + " " + a.Version, Total: len(hosts), Hosts: rep.Unreachable}
}

// rollouter carries a deploy's rollout out on the hosts.
type rollouter struct {
	e      *Env
	def    *service.Def
	a      *service.Artifact
	byName map[string]inventory.Host
	// before is each host's service as the deploy found it.
	before map[string]service.State
}

var _ rollout.Executor = (*rollouter)(nil)

func (x *rollouter) hosts(names []string) []inventory.Host {
	out := make([]inventory.Host, 0, len(names))
	for _, n := range names {
		out = append(out, x.byName[n])
	}
	return out
}

func (x *rollouter) Drain(ctx context.Context, names []string) error {
	return x.e.Drain(ctx, x.hosts(names))
}
func (x *rollouter) UpdateLB(ctx context.Context) error { return x.e.UpdateLB(ctx) }

func (x *rollouter) Rollback(ctx context.Context, names []string) error {
	return x.e.Rollback(ctx, x.def, x.hosts(names), "roll back after a failed deploy")
}

// Change uploads the release where missing, switches to it, restarts the
// service and checks it, on each host of the batch: here, or through the
// conductors of the hosts' sites (the env file's sites), which do the same
// on the host; the inventory is written here from what they say.
func (x *rollouter) Change(ctx context.Context, title string, names []string) (map[string]rollout.Result, error) {
	var mu sync.Mutex
	outcomes := map[string]deployOutcome{}
	keep := func(h string, out deployOutcome) {
		mu.Lock()
		outcomes[h] = out
		mu.Unlock()
	}
	o, step := deployJob.Halves(jobs.Op{Live: true, KeepList: true,
		BeforeJobs: func(ctx context.Context, js jetstream.JetStream) error {
			return conductor.PutArtifact(ctx, js, artifactObject(x.a), x.a.Path, x.a.SHA256)
		}}, deployArgs{Service: x.def.Name, Version: x.a.Version, Commit: x.a.Commit, SHA256: x.a.SHA256, Object: artifactObject(x.a)},
		deployHost(x.e.Worker, x.def, x.a),
		func(ctx context.Context, h inventory.Host, out deployOutcome, err error) (string, error) {
			keep(h.Name, out)
			if rerr := x.e.recordDeploy(ctx, h, out, x.def.Name+" "+x.a.Version+" ("+x.a.SHA256[:min(12, len(x.a.SHA256))]+")"); err == nil {
				err = rerr
			}
			if err != nil {
				return "", err
			}
			return x.note(h, out), nil
		})
	results, err := x.e.op(ctx, title, x.hosts(names), o, step)
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
func (x *rollouter) note(h inventory.Host, out deployOutcome) string {
	what := x.def.Name + " " + x.a.Version // it ran this version already (not serving, or another build)
	if old := x.before[h.Name]; !old.Running {
		what = fmt.Sprintf("%s (not running) → %s", x.def.Name, x.a.Version)
	} else if old.Version != x.a.Version {
		what = fmt.Sprintf("%s %s → %s", x.def.Name, old.Version, x.a.Version)
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
	return func(ctx context.Context, c fleet.Conn) (deployOutcome, error) {
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
func (e *Env) recordDeploy(ctx context.Context, h inventory.Host, out deployOutcome, release string) error {
	if out.Switched { // one event per host a deploy switched: how many times each was deployed
		err := e.Store.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error {
			return tx.Record(inventory.Event{Env: e.Env.Name, Host: h.Name, Kind: "deployed", Detail: release})
		})
		if err != nil {
			return err
		}
	}
	if !out.Healthy {
		return nil
	}
	if err := e.advance(ctx, h.Name, inventory.Serving, ""); err != nil {
		return err
	}
	if out.CheckFailed {
		return e.advance(context.WithoutCancel(ctx), h.Name, inventory.Draining, "")
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

// HostNames are the hosts' names, in order.
func HostNames(hosts []inventory.Host) []string { return hostNames(hosts) }
