package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/provider"
	"booted/internal/service"
)

// Rebuild builds host name again from scratch (its service drained and
// deployed again), with a new host key pinned (hosts:rebuild).
func (s *Session) Rebuild(ctx context.Context, name string) error {
	h, err := s.Store.Host(ctx, s.Env.Name, name)
	if err != nil {
		return fmt.Errorf("hosts:rebuild: host %s: %w (hosts:list %s shows the inventory)", name, err, s.Env.Name)
	}
	if _, ok := s.ProvOf(name).(provider.Deleter); !ok {
		return outcome.Refuse("hosts:rebuild: host %s: the %s provider does not own its hosts and cannot make them again", name, s.Env.ProviderOf(name))
	}
	start := time.Now()
	old := fingerprint(h.HostKey)
	// The version it runs now is the one it gets back (a deploy may have
	// moved the role past the env file's).
	version := ""
	if rl := s.Env.Roles[h.Role]; rl != nil && rl.Service != "" {
		version = rl.Version
		if def, err := s.LoadService(rl.Service); err == nil {
			if st := s.Deploys().States(ctx, def, []inventory.Host{h})[name]; st.Running && st.Version != "" {
				version = st.Version
			}
		}
	}
	if err := s.Deploys().Drain(ctx, []inventory.Host{h}); err != nil { // the load balancers stop sending to it
		return err
	}
	if h.State == inventory.Serving || h.State == inventory.Draining {
		if err := s.Advance(ctx, name, inventory.Stopped, "rebuild"); err != nil {
			return err
		}
	}
	if err := s.Life().Delete(ctx, name, true); err != nil {
		return err
	}
	if err := s.Life().Retire(ctx, name, inventory.Terminated, "rebuild"); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "%s: deleted; building it again\n", name)
	if err := s.BootHosts(ctx, []string{name}); err != nil {
		return err
	}
	err = s.EachRoleService(ctx, []string{name}, func(rl *config.Role, def *service.Def, hosts []inventory.Host) error {
		if err := s.Deploys().Deploy(ctx, def, version, hosts); err != nil {
			return err
		}
		return s.Deploys().Test(ctx, def, hosts)
	})
	if err != nil {
		return err
	}
	if err := s.Deploys().UpdateLB(ctx); err != nil { // a load balancer rebuilt gets its configuration again
		return err
	}
	nh, err := s.Store.Host(ctx, s.Env.Name, name)
	if err != nil {
		return err
	}
	if nh.HostKey == h.HostKey && h.HostKey != "" {
		return errors.New("hosts:rebuild: host " + name + " came back with its old host key: it was not made again")
	}
	fmt.Fprintf(s.Out, "%s: rebuilt in %v: host key %s (was %s), %s\n", name, time.Since(start).Round(time.Millisecond), fingerprint(nh.HostKey), old, nh.State)
	return nil
}
