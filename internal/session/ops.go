package session

import (
	"context"
	"path/filepath"

	"booted/internal/deploy"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/provider"
	"booted/internal/remote"
	"booted/internal/service"
	"booted/internal/sitedio"
	"booted/internal/transfer"
)

// Ops runs s's multi-host operations (hostops), one per session: it says
// a damaged host once.
func (s *Session) Ops() *hostops.Runner {
	s.lazy.Lock()
	defer s.lazy.Unlock()
	if s.o == nil {
		s.o = &hostops.Runner{Store: s.Store, Env: s.Env, Parallel: s.Parallel, Limit: s.Limit, RetryFailed: s.RetryFailed, JSON: s.JSON, Out: s.Out, Err: s.Err}
	}
	return s.o
}

// Sites is where s's hosts are worked on: here, or through their sites'
// conductors (sitedio).
func (s *Session) Sites() *sitedio.Split {
	return &sitedio.Split{Env: s.Env, Here: s.IO, NATS: s.ControllerNATS}
}

// Each runs step on hosts: those of a site through its conductors when
// o has a job (and the env file sites), the others here.
func (s *Session) Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, o jobs.Op, step jobs.Step) []remote.Result {
	return s.Sites().Each(ctx, hosts, opt, o, step)
}

// Deploys is s's services and load balancers (deploy).
func (s *Session) Deploys() *deploy.Env {
	return &deploy.Env{Env: s.Env, Store: s.Store, Ops: s.Ops(), Sites: s.Sites(), Worker: worker{s}, Settings: s.Settings, Out: s.Out, Err: s.Err}
}

// worker is what a job's host half uses here and on a conductor
// (jobs.Worker): the session's services, artifacts and hosts.
type worker struct{ *Session }

func (w worker) Artifacts() string { return filepath.Join(w.Inventory, "artifacts") }
func (w worker) WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error {
	return w.IO.WaitHealthy(ctx, def, h)
}
func (w worker) Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult {
	return w.IO.Checks(ctx, def, h)
}
func (w worker) Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error {
	return w.IO.Alive(ctx, hosts, parallel)
}
func (w worker) Provider(name string) provider.Provider { return w.ProvOf(name) }
func (w worker) Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error) {
	return w.IO.Get(ctx, def, h, path)
}

// Op runs step on hosts as an operation (hostops.Runner.Run): the hosts
// of a site through its conductors when o has a job, the others here.
func (s *Session) Op(ctx context.Context, title string, hosts []inventory.Host, o jobs.Op, step jobs.Step) ([]remote.Result, error) {
	return s.Ops().Run(ctx, title, hosts, o.Show(),
		func(ctx context.Context, hosts []inventory.Host, opt remote.Options) []remote.Result {
			return s.Each(ctx, hosts, opt, o, step)
		})
}

// Advance moves a host to a state by the lifecycle's path (see
// inventory.Tx.Advance).
func (s *Session) Advance(ctx context.Context, name string, to inventory.State, reason string) error {
	return s.Store.Advance(ctx, s.Env.Name, name, to, reason)
}

// Transfer copies files to and from s's hosts (hosts:put, hosts:get).
func (s *Session) Transfer() *transfer.Hosts {
	return &transfer.Hosts{Env: s.Env, Op: s.Op, NATS: s.ControllerNATS, Records: s.Store, Verify: s.Verify}
}
