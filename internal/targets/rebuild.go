package targets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"booted/internal/outcome"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/service"
)

// HostsRebuild provisions HOST again from nothing (clusto's rebuild): it
// takes the host out of the load balancers first (they reload gracefully,
// finishing the requests in flight), powers it off and deletes it, builds
// and boots it with a new enrollment (so a new host key, pinned in place
// of the old one, which is refused from then on), then deploys its role's
// service and puts it back. Hosts the provider does not own (static) are
// refused.
func (r *Runner) HostsRebuild(ctx context.Context, envName, host string) error {
	return r.withLock(ctx, envName, "hosts:rebuild "+envName+" "+host, func(s *session) error {
		return s.rebuild(ctx, host)
	})
}

func (s *session) rebuild(ctx context.Context, name string) error {
	h, err := s.store.Host(ctx, s.env.Name, name)
	if err != nil {
		return fmt.Errorf("hosts:rebuild: host %s: %w (hosts:list %s shows the inventory)", name, err, s.env.Name)
	}
	if _, ok := s.provOf(name).(provider.Deleter); !ok {
		return outcome.Refuse("hosts:rebuild: host %s: the %s provider does not own its hosts and cannot make them again", name, s.env.ProviderOf(name))
	}
	start := time.Now()
	old := fingerprint(h.HostKey)
	// The version it runs now is the one it gets back (a deploy may have
	// moved the role past the env file's).
	version := ""
	if rl := s.env.Roles[h.Role]; rl != nil && rl.Service != "" {
		version = rl.Version
		if def, err := s.loadService(rl.Service); err == nil {
			if st := s.dep().States(ctx, def, []inventory.Host{h})[name]; st.Running && st.Version != "" {
				version = st.Version
			}
		}
	}
	if err := s.dep().Drain(ctx, []inventory.Host{h}); err != nil { // the load balancers stop sending to it
		return err
	}
	if h.State == inventory.Serving || h.State == inventory.Draining {
		if err := s.advance(ctx, name, inventory.Stopped, "rebuild"); err != nil {
			return err
		}
	}
	if err := s.life().Delete(ctx, name, true); err != nil {
		return err
	}
	if err := s.life().Retire(ctx, name, inventory.Terminated, "rebuild"); err != nil {
		return err
	}
	fmt.Fprintf(s.r.Out, "%s: deleted; building it again\n", name)
	if err := s.bootHosts(ctx, []string{name}); err != nil {
		return err
	}
	err = s.eachRoleService(ctx, []string{name}, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		if err := s.dep().Deploy(ctx, def, version, hosts); err != nil {
			return err
		}
		return s.dep().Test(ctx, def, hosts)
	})
	if err != nil {
		return err
	}
	if err := s.dep().UpdateLB(ctx); err != nil { // a load balancer rebuilt gets its configuration again
		return err
	}
	nh, err := s.store.Host(ctx, s.env.Name, name)
	if err != nil {
		return err
	}
	if nh.HostKey == h.HostKey && h.HostKey != "" {
		return errors.New("hosts:rebuild: host " + name + " came back with its old host key: it was not made again")
	}
	fmt.Fprintf(s.r.Out, "%s: rebuilt in %v: host key %s (was %s), %s\n", name, time.Since(start).Round(time.Millisecond), fingerprint(nh.HostKey), old, nh.State)
	return nil
}
