package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// Hosts is an environment's hosts' life: build, record, provision and
// start them (up.go); power them off, stop and delete them, and the
// states they end in (retire). It is the only writer of those states.
type Hosts struct {
	Env   *config.Env
	Store *inventory.Store
	Provs *Providers
	// Spec is what the provider needs to make host name (no token: Start
	// enrolls one for each boot).
	Spec func(name string) (provider.Spec, error)
	// Pin records the hosts (all of them when none is named) whose keys
	// their provider k knows beforehand, instead of their phoning home.
	Pin func(ctx context.Context, k provider.KnownKeys, names ...string) error
	// Drain updates the load balancers once the serving set changed (a
	// serving host retired); nil: nothing routes to hosts.
	Drain func(ctx context.Context) error
	// Log is where a host left as it is is said.
	Log io.Writer
}

// PowerOff powers host name off through its provider, without recording
// it; a provider that does not power hosts leaves it as it is (powered
// false, said on Log).
func (h *Hosts) PowerOff(ctx context.Context, name string) (powered bool, err error) {
	pw, ok := h.Provs.Of(name).(provider.Power)
	if !ok {
		fmt.Fprintf(h.Log, "host %s: the %s provider does not power hosts: left as it is\n", name, h.Env.ProviderOf(name))
		return false, nil
	}
	if err := pw.Stop(ctx, name); err != nil {
		if errors.Is(err, provider.ErrNoInstance) {
			return false, fmt.Errorf("host %s of %s: nothing to stop: it was never built (see image:list %s)", name, h.Env.Name, h.Env.Name)
		}
		return false, err
	}
	return true, nil
}

// Stop powers host name off and records it stopped (out of the load
// balancers first if it was serving).
func (h *Hosts) Stop(ctx context.Context, name string) error {
	powered, err := h.PowerOff(ctx, name)
	if err != nil || !powered {
		return err
	}
	return h.Retire(ctx, name, inventory.Stopped, "")
}

// Retire moves host name to stopped or terminated (draining first if it
// was serving) and updates the load balancers if the serving set
// changed. A host whose row is damaged is forgotten instead.
func (h *Hosts) Retire(ctx context.Context, name string, to inventory.State, reason string) error {
	host, err := h.Store.Host(ctx, h.Env.Name, name)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if host.Damaged != "" { // its row cannot be moved: it goes
		return h.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.Forget(h.Env.Name, name, string(to)+": its row was damaged") })
	}
	if err := h.Store.Advance(ctx, h.Env.Name, name, to, reason); err != nil {
		return err
	}
	if host.State == inventory.Serving && h.Drain != nil {
		return h.Drain(ctx) // the serving set changed
	}
	return nil
}

// Delete removes host name through its provider, powering it off first
// when force is set.
func (h *Hosts) Delete(ctx context.Context, name string, force bool) error {
	return h.DeleteWith(ctx, h.Provs.Of(name), name, force)
}

// DeleteWith is Delete through prov.
func (h *Hosts) DeleteWith(ctx context.Context, prov provider.Provider, name string, force bool) error {
	del, ok := prov.(provider.Deleter)
	if !ok {
		return fmt.Errorf("host %s: the %s provider does not own its hosts and cannot delete them (remove it from %s instead)", name, h.Env.ProviderOf(name), h.Env.Path)
	}
	if pw, ok := prov.(provider.Power); ok && force {
		if err := pw.Stop(ctx, name); err != nil && !errors.Is(err, provider.ErrNoInstance) {
			return err
		}
	}
	if err := del.Delete(ctx, name); err != nil {
		if errors.Is(err, provider.ErrRunning) {
			return fmt.Errorf("%w (image:stop %s %s)", err, h.Env.Name, name)
		}
		return err
	}
	// The machine its key was made on is gone: a copy of that key must
	// not pass for the host its next provisioning makes.
	return h.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.Revoke(h.Env.Name, name) })
}
