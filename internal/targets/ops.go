package targets

import (
	"context"
	"encoding/json"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/remote"
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

type opOptions struct {
	// keepList: the caller filters for BOOTED_RETRY and saves the failed
	// hosts itself (an operation made of several ops).
	keepList bool
	// live shows the progress display; off when the hosts' output is the display.
	live bool
	// output gives each host's stdout and stderr.
	output func(host string) (io.Writer, io.Writer)
	// onDone is told of each host as it finishes.
	onDone func(r remote.Result)
	// job, when set, is step as a job for conductors: the hosts of a
	// site (the env file's sites) get it through their conductors.
	job *conductor.Job
	// perHost, if set, gives each host's job its own Args (a load
	// balancer's configuration).
	perHost func(h inventory.Host) json.RawMessage
	// beforeJobs, if set, runs once before jobs are published (a
	// deploy's release put in the object store).
	beforeJobs func(ctx context.Context, js jetstream.JetStream) error
	// conducted, if set, is told of each conducted host's result before
	// it is shown (what the controller records from it), and may change it.
	conducted func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result)
}

// each runs step on hosts: those of a site through its conductors when
// o has a job (and the env file sites), the others here.
func (s *session) each(ctx context.Context, hosts []inventory.Host, opt remote.Options, o opOptions, step func(ctx context.Context, c hostConn) error) []remote.Result {
	if o.job != nil && len(s.env.Sites) > 0 {
		return s.conducted(ctx, hosts, opt, o, step)
	}
	return s.io.Each(ctx, hosts, opt, step)
}

// op runs step on hosts as an operation (hostops.Runner.Run): the hosts
// of a site through its conductors when o has a job, the others here.
func (s *session) op(ctx context.Context, title string, hosts []inventory.Host, o opOptions, step func(ctx context.Context, c hostConn) error) ([]remote.Result, error) {
	return s.ops().Run(ctx, title, hosts, hostops.Show{KeepList: o.keepList, Live: o.live, Output: o.output, OnDone: o.onDone},
		func(ctx context.Context, hosts []inventory.Host, opt remote.Options) []remote.Result {
			return s.each(ctx, hosts, opt, o, step)
		})
}

// advance moves a host to a state by the lifecycle's path (see
// inventory.Tx.Advance).
func (s *session) advance(ctx context.Context, name string, to inventory.State, reason string) error {
	return s.store.Advance(ctx, s.env.Name, name, to, reason)
}
