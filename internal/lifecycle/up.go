package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"booted/internal/bootlog"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// Build makes spec's host through its provider and records it; it
// returns the instance as the provider sees it (running or not). A new
// host is recorded provisioning, then stopped (or failed, with why).
func (h *Hosts) Build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	name := spec.Name
	host, err := h.Store.Host(ctx, h.Env.Name, name)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return provider.Instance{}, err
	}
	fresh := err != nil || host.State == inventory.Terminated
	if fresh {
		if err := h.Record(ctx, name, spec.Role, nil, inventory.Provisioning, ""); err != nil {
			return provider.Instance{}, err
		}
	}
	inst, err := h.Provs.Of(name).Build(ctx, spec)
	if err != nil {
		if fresh {
			h.Store.Advance(context.WithoutCancel(ctx), h.Env.Name, name, inventory.Failed, err.Error())
		}
		return inst, err
	}
	to := inventory.State("")
	if fresh {
		to = inventory.Stopped
	}
	return inst, h.Record(ctx, name, spec.Role, &inst, to, "")
}

// Record fills a host's record from what its provider says of it (inst,
// if given) and moves it to state to (if given; a new host is recorded
// in it). The provider's address is the only one the host may call from.
func (h *Hosts) Record(ctx context.Context, name, role string, inst *provider.Instance, to inventory.State, reason string) error {
	return h.Store.Update(ctx, func(tx *inventory.Tx) error {
		_, err := tx.Host(h.Env.Name, name)
		exists := err == nil
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		addr := ""
		err = tx.Modify(h.Env.Name, name, func(host *inventory.Host) error {
			if role != "" { // the env file says (a host it moved to another role)
				host.Role = role
			}
			host.Provider = h.Env.ProviderOf(name)
			if inst != nil {
				host.ProviderID, host.MAC, host.Port = inst.ID, inst.MAC, h.Env.SSH.Port
				if inst.Addr != "" { // the provider knows where it is now (an env file may move a node)
					host.Addr = inst.Addr
				}
			}
			addr = host.Addr
			if !exists && to != "" {
				host.State, host.Reason = to, reason
			}
			return nil
		})
		if err != nil {
			return err
		}
		if inst != nil && inst.Addr != "" { // the provider knows where the host is: only from there
			if err := tx.Expect(h.Env.Name, name, addr); err != nil {
				return err
			}
		}
		if to == "" || !exists {
			return nil
		}
		return tx.Advance(h.Env.Name, name, to, reason)
	})
}

// Provision is Start for an operator's or a role's request: a host with
// stages gets its retries afresh.
func (h *Hosts) Provision(ctx context.Context, name string) error {
	h.freshRetries(ctx, name)
	return h.Start(ctx, name)
}

// freshRetries gives a host with stages its retries afresh.
func (h *Hosts) freshRetries(ctx context.Context, name string) {
	if _, ok := h.Provs.Of(name).(provider.Stages); ok {
		h.Store.Update(ctx, func(tx *inventory.Tx) error { return tx.Put(h.Env.Name, "retries/"+name, 0) })
	}
}

// Start boots host name (built first if need be) and moves it to
// booting, unless it already runs; a host whose key its provider knows
// is pinned, the others get a token for this boot alone.
func (h *Hosts) Start(ctx context.Context, name string) error {
	if k, known := h.Provs.KnownKeys(name); known {
		return h.startKnown(ctx, k, name)
	}
	spec, built, err := h.specBuilt(ctx, name)
	if err != nil {
		return err
	}
	return h.boot(ctx, spec, built)
}

// specBuilt makes host name's spec and builds it.
func (h *Hosts) specBuilt(ctx context.Context, name string) (provider.Spec, provider.Instance, error) {
	spec, err := h.Spec(name)
	if err != nil {
		return spec, provider.Instance{}, err
	}
	built, err := h.Build(ctx, spec)
	return spec, built, err
}

// Launch brings up a new instance, building it once: built, then ready
// is told of its record (its address known: what the metadata service
// tells it), then it boots as Provision boots a host.
func (h *Hosts) Launch(ctx context.Context, name string, ready func(ctx context.Context, host inventory.Host) error) error {
	spec, built, err := h.specBuilt(ctx, name)
	if err != nil {
		return err
	}
	host, err := h.Store.Host(ctx, h.Env.Name, name)
	if err != nil {
		return err
	}
	if err := ready(ctx, host); err != nil {
		return err
	}
	h.freshRetries(ctx, name)
	if k, known := h.Provs.KnownKeys(name); known {
		return h.startKnown(ctx, k, name)
	}
	return h.boot(ctx, spec, built)
}

// startKnown powers on a host whose key its provider knows, and pins it.
func (h *Hosts) startKnown(ctx context.Context, k provider.KnownKeys, name string) error {
	if _, err := h.Provs.Of(name).Start(ctx, provider.Spec{Name: name}); err != nil {
		return err
	}
	return h.Pin(ctx, k, name)
}

// boot boots spec's host, built as built says, unless it already runs.
func (h *Hosts) boot(ctx context.Context, spec provider.Spec, built provider.Instance) error {
	name := spec.Name
	host, err := h.Store.Host(ctx, h.Env.Name, name)
	if err != nil {
		return err
	}
	if built.State == provider.Running {
		switch host.State {
		case inventory.Booting, inventory.Booted, inventory.Ready, inventory.Serving:
			return nil // up already
		}
		// Running, but failed (or not up, as booted knows it): started
		// as it is, it would not boot, nor phone home with the token
		// made below, and its boot timed out. It is powered off first
		// (by a provider that can).
		if pw, ok := h.Provs.Of(name).(provider.Power); ok {
			if err := pw.Stop(ctx, name); err != nil {
				return fmt.Errorf("host %s: runs but is %s: powering it off to boot it again: %w", name, host.State, err)
			}
		}
	}
	// A new provisioning: a token for this boot alone. The boot timeout
	// counts from here.
	if err := h.Enroll(ctx, &spec); err != nil {
		return err
	}
	if host.State == inventory.Booting { // booting no more (it is off): its boot counts from now
		if err := h.Store.Advance(ctx, h.Env.Name, name, inventory.Failed, "not running while booting: provisioned again"); err != nil {
			return err
		}
	}
	if err := h.Store.Advance(ctx, h.Env.Name, name, inventory.Booting, ""); err != nil {
		return err
	}
	inst, err := h.Provs.Of(name).Start(ctx, spec)
	if err != nil {
		h.Store.Advance(context.WithoutCancel(ctx), h.Env.Name, name, inventory.Failed, err.Error())
		return err
	}
	return h.Record(ctx, name, spec.Role, &inst, "", "")
}

// Enroll makes starting spec's host a new provisioning: a fresh
// single-use token, pinned to the host's address when it has one, valid
// for the boot timeout and a minute.
func (h *Hosts) Enroll(ctx context.Context, spec *provider.Spec) error {
	spec.Token = bootlog.NewToken()
	return h.Store.Update(ctx, func(tx *inventory.Tx) error {
		from := ""
		if host, err := tx.Host(h.Env.Name, spec.Name); err == nil {
			from = host.Addr
		}
		return tx.Issue(h.Env.Name, spec.Name, bootlog.HashToken(spec.Token), time.Now().Add(h.Env.Timeouts.Boot.D()+time.Minute), from)
	})
}
