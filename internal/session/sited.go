package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"booted/internal/conductor"
	"booted/internal/fanout"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/provider"
	"booted/internal/provider/sited"
	"booted/internal/remote"
)

// sitedProv returns p as the controller sees it for host name: through
// its site's conductors when the site has a network of its own that p
// makes hosts on; else p.
func (s *Session) sitedProv(name string, p provider.Provider) provider.Provider {
	if s.Conducting != "" {
		return p // a conductor makes its site's hosts
	}
	var site string
	switch b := p.(type) {
	case interface{ HostLinks() []string }: // local hosts: on their site's network
		site = s.SiteOfHost(name)
	case interface{ SiteOf(string) string }: // bare-metal nodes: on a network of a site
		site = b.SiteOf(name)
	}
	if _, ok := s.SiteGateway(site); !ok {
		return p
	}
	return sited.Wrap(p, s.Env.Name, site, siteCaller{s}, s.Env.Timeouts.Boot.D())
}

// siteCaller has a site's conductors do the site provider's jobs
// (sited.Caller), as every job of the controller goes to them.
type siteCaller struct{ s *Session }

func (c siteCaller) Call(ctx context.Context, j conductor.Job) (conductor.Result, error) {
	s := c.s
	var got *conductor.Result
	o := jobs.Op{Job: &j, Conducted: func(_ context.Context, _ inventory.Host, cr conductor.Result, _ *remote.Result) { got = &cr }}
	res := s.Sites().Dispatch(ctx, remote.Options{Timeout: j.Timeout}, o, j.Run, []conductor.Job{j}, map[string]inventory.Host{j.Host.Name: {Env: s.Env.Name, Name: j.Host.Name}})
	if got != nil {
		return *got, nil
	}
	if len(res) == 1 && res[0].Err != nil {
		return conductor.Result{}, res[0].Err
	}
	return conductor.Result{}, fmt.Errorf("host %s: %s through site %s's conductors: no result", j.Host.Name, strings.TrimPrefix(j.Kind, sited.JobPrefix), j.Site)
}

// ProvisionAll provisions names, up to BOOTED_PARALLEL at once (each a
// round trip to a conductor, which does its own share at once too), and
// returns every host's failure.
func (s *Session) ProvisionAll(ctx context.Context, names []string) error {
	errs := make([]error, len(names))
	fanout.Each(ctx, len(names), s.Parallel, func(ctx context.Context, i int) { errs[i] = s.Life().Provision(ctx, names[i]) },
		func(i int) { errs[i] = fmt.Errorf("host %s: not provisioned: %w", names[i], ctx.Err()) })
	return errors.Join(errs...)
}
