package targets

import (
	"context"
	"path/filepath"

	"booted/internal/config"
	"booted/internal/deploy"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/service"
	"booted/internal/sitedio"
)

// ops runs s's multi-host operations (hostops), one per session: it says
// a damaged host once.
func (s *session) ops() *hostops.Runner {
	if s.o == nil {
		s.o = &hostops.Runner{Store: s.store}
	}
	s.o.Env, s.o.Parallel, s.o.Limit, s.o.RetryFailed, s.o.JSON, s.o.Out, s.o.Err = s.env, s.r.Parallel, s.r.Limit, s.r.RetryFailed, s.r.JSON, s.r.Out, s.r.Err
	return s.o
}

// splitSel splits "ENV/ROLE".
var splitSel = config.SplitSelector

// sites is where s's hosts are worked on: here, or through their sites'
// conductors (sitedio).
func (s *session) sites() *sitedio.Split {
	return &sitedio.Split{Env: s.env, Here: s.io, NATS: s.controllerNATS}
}

// each runs step on hosts: those of a site through its conductors when
// o has a job (and the env file sites), the others here.
func (s *session) each(ctx context.Context, hosts []inventory.Host, opt remote.Options, o jobs.Op, step jobs.Step) []remote.Result {
	return s.sites().Each(ctx, hosts, opt, o, step)
}

// dep is s's services and load balancers (deploy).
func (s *session) dep() *deploy.Env {
	return &deploy.Env{Env: s.env, Store: s.store, Ops: s.ops(), Sites: s.sites(), Worker: worker{s}, Settings: s.r.Settings, Out: s.r.Out, Err: s.r.Err}
}

// worker is what a job's host half uses here and on a conductor
// (jobs.Worker): the session's services, artifacts and hosts.
type worker struct{ *session }

func (w worker) LoadService(name string) (*service.Def, error) { return w.loadService(name) }
func (w worker) Artifacts() string                             { return filepath.Join(w.r.Inventory, "artifacts") }
func (w worker) WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error {
	return w.io.WaitHealthy(ctx, def, h)
}
func (w worker) Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult {
	return w.io.Checks(ctx, def, h)
}
func (w worker) Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error) {
	return w.io.Get(ctx, def, h, path)
}

// op runs step on hosts as an operation (hostops.Runner.Run): the hosts
// of a site through its conductors when o has a job, the others here.
func (s *session) op(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
	return s.ops().Run(ctx, title, hosts, o.Show(),
		func(ctx context.Context, hosts []inventory.Host, opt remote.Options) []remote.Result {
			return s.each(ctx, hosts, opt, o, step)
		})
}

// advance moves a host to a state by the lifecycle's path (see
// inventory.Tx.Advance).
func (s *session) advance(ctx context.Context, name string, to inventory.State, reason string) error {
	return s.store.Advance(ctx, s.env.Name, name, to, reason)
}
