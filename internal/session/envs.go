package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/metadata"
	"booted/internal/provider"
	"booted/internal/provider/sited"
	"booted/internal/service"
)

// BootHosts starts hosts, discovers them and checks them; it fails naming
// the hosts that did not become ready.
func (s *Session) BootHosts(ctx context.Context, names []string) error {
	if err := s.StartController(ctx); err != nil {
		return err
	}
	var ofSites []string // made by their sites' conductors: asked at once
	for _, n := range names {
		if _, ok := sited.Site(s.ProvOf(n)); ok {
			ofSites = append(ofSites, n)
			continue
		}
		if err := s.Life().Provision(ctx, n); err != nil {
			return err
		}
	}
	if err := s.ProvisionAll(ctx, ofSites); err != nil {
		return err
	}
	if err := s.Logged(ctx); err != nil {
		return err
	}
	if err := s.Filter(ctx); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
	if err != nil {
		return err
	}
	var failed []string
	for _, h := range hosts {
		if want[h.Name] && !h.State.Up() {
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", h.Name, h.State, h.Reason))
		}
	}
	if len(failed) > 0 {
		s.PrintHosts(ctx)
		return fmt.Errorf("%s: %d hosts did not come up: %s", s.Env.Name, len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// EachRoleService calls fn for each role that runs a service, with its
// hosts among names (roles with none are passed over), in role order.
func (s *Session) EachRoleService(ctx context.Context, names []string, fn func(rl *config.Role, def *service.Def, hosts []inventory.Host) error) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, role := range s.Env.RoleNames() {
		rl := s.Env.Roles[role]
		if rl.Service == "" {
			continue
		}
		def, err := s.LoadService(rl.Service)
		if err != nil {
			return err
		}
		hosts, err := s.Ops().Select(ctx, role, func(h inventory.Host) bool { return want[h.Name] })
		if err == nil {
			hosts, err = s.Query().WithClasses(ctx, hosts)
		}
		if err != nil {
			return err
		}
		if len(hosts) == 0 {
			continue
		}
		if err := fn(rl, def, hosts); err != nil {
			return err
		}
	}
	return nil
}

// DeployRoles deploys, starts and tests each role's service on the named hosts.
func (s *Session) DeployRoles(ctx context.Context, names []string) error {
	err := s.EachRoleService(ctx, names, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		if err := s.Deploys().Deploy(ctx, def, rl.Version, hosts); err != nil {
			return err
		}
		if err := s.Deploys().Test(ctx, def, hosts); err != nil {
			return err
		}
		if !s.JSON {
			for _, h := range hosts {
				fmt.Fprintf(s.Out, "%s on %s: curl %s/\n", def.Name, h.Name, def.URL(h.Addr))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The load balancers come up after the workers.
	if err := s.Deploys().UpdateLB(ctx); err != nil {
		return err
	}
	if url, err := s.Deploys().LBURL(ctx); err == nil && !s.JSON {
		fmt.Fprintf(s.Out, "load balancer: curl %s/\n", url)
	}
	return nil
}

// StartWorker boots one host, deploys its role's service and puts it in
// the load balancer: env:startWorker, and the monitor's scale-up.
func (s *Session) StartWorker(ctx context.Context, host string) error {
	if _, ok := s.Env.RoleOf(host); !ok {
		return fmt.Errorf("%s: %s is not a host of any role", s.Env.Path, host)
	}
	if err := s.BootHosts(ctx, []string{host}); err != nil {
		return err
	}
	return s.DeployRoles(ctx, []string{host})
}

// Destroy powers off and deletes every host the provider made (recorded
// as terminated, for why), stops the controller and tears down what else
// the provider set up. It acts on this machine itself, the sites' hosts
// and networks (its namespaces) included, conductors running or not.
func (s *Session) Destroy(ctx context.Context, why string) (int, error) {
	insts, err := s.Provs.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error // one host that cannot be deleted (its BMC down, say) does not keep the rest
	for _, in := range insts {
		if _, ok := s.Provs.Own(in.Name).(provider.Deleter); ok {
			if err := s.Life().DeleteWith(ctx, s.Provs.Own(in.Name), in.Name, true); err != nil {
				errs = append(errs, err)
				continue
			}
			if _, err := s.Store.Host(ctx, s.Env.Name, in.Name); err == nil {
				if err := s.Advance(ctx, in.Name, inventory.Terminated, why); err != nil {
					return n, err
				}
			}
			n++
		}
	}
	if err := s.Ctl.Stop(ctx); err != nil {
		return n, errors.Join(append(errs, err)...)
	}

	for _, p := range s.Provs.All() {
		if t, ok := p.(provider.Teardowner); ok {
			errs = append(errs, t.Teardown(ctx))
		}
	}
	errs = append(errs, s.DownLab(ctx)) // the emulated machines of metal:lab
	errs = append(errs, metadata.Unroute(ctx, s.Env.Name))
	return n, errors.Join(errs...)
}
