package targets

import (
	"context"
	"errors"
	"fmt"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// eachHost opens ENV and calls fn for each of the comma-separated hosts,
// then lists the environment's hosts.
func (r *Runner) eachHost(ctx context.Context, what, envName, hosts string, fn func(s *session, name string) error) error {
	ns, err := config.HostList(hosts)
	if err != nil {
		return err
	}
	return r.withLock(ctx, envName, what+" "+envName+" "+hosts, func(s *session) error {
		for _, n := range ns {
			if err := fn(s, n); err != nil {
				return err
			}
		}
		return r.imageList(ctx, s)
	})
}

// ImageBuild makes hosts (comma-separated names) without starting them.
func (r *Runner) ImageBuild(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, "image:build", envName, hosts, func(s *session, n string) error { return s.buildHost(ctx, n) })
}

// buildHost makes host n through its provider and records it.
func (s *session) buildHost(ctx context.Context, n string) error {
	spec, err := s.spec(n)
	if err != nil {
		return err
	}
	_, err = s.build(ctx, spec)
	return err
}

// build makes the host through the provider and records it; it returns
// the instance as the provider sees it (running or not).
func (s *session) build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	name := spec.Name
	h, err := s.store.Host(ctx, s.env.Name, name)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return provider.Instance{}, err
	}
	fresh := err != nil || h.State == inventory.Terminated
	if fresh {
		if err := s.record(ctx, name, spec.Role, nil, inventory.Provisioning, ""); err != nil {
			return provider.Instance{}, err
		}
	}
	inst, err := s.provOf(name).Build(ctx, spec)
	if err != nil {
		if fresh {
			s.advance(context.WithoutCancel(ctx), name, inventory.Failed, err.Error())
		}
		return inst, err
	}
	to := inventory.State("")
	if fresh {
		to = inventory.Stopped
	}
	return inst, s.record(ctx, name, spec.Role, &inst, to, "")
}

// record fills a host's record from what the provider says of it
// (inst, if given) and moves it to state to (if given; a new host is
// recorded in it).
func (s *session) record(ctx context.Context, name, role string, inst *provider.Instance, to inventory.State, reason string) error {
	return s.store.Update(ctx, func(tx *inventory.Tx) error {
		_, err := tx.Host(s.env.Name, name)
		exists := err == nil
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		addr := ""
		err = tx.Modify(s.env.Name, name, func(h *inventory.Host) error {
			if role != "" { // the env file says (a host it moved to another role)
				h.Role = role
			}
			h.Provider = s.env.ProviderOf(name)
			if inst != nil {
				h.ProviderID, h.MAC, h.Port = inst.ID, inst.MAC, s.env.SSH.Port
				if inst.Addr != "" { // the provider knows where it is now (an env file may move a node)
					h.Addr = inst.Addr
				}
			}
			addr = h.Addr
			if !exists && to != "" {
				h.State, h.Reason = to, reason
			}
			return nil
		})
		if err != nil {
			return err
		}
		if inst != nil && inst.Addr != "" { // the provider knows where the host is: only from there
			if err := tx.Expect(s.env.Name, name, addr); err != nil {
				return err
			}
		}
		if to == "" || !exists {
			return nil
		}
		return tx.Advance(s.env.Name, name, to, reason)
	})
}

// ImageStart boots hosts (comma-separated names), building them first if
// needed. A host already running is left alone.
func (r *Runner) ImageStart(ctx context.Context, envName, hosts string) error {
	started := false
	return r.eachHost(ctx, "image:start", envName, hosts, func(s *session, n string) error {
		if !started {
			if err := s.startController(ctx); err != nil {
				return err
			}
			started = true
		}
		return s.provision(ctx, n)
	})
}

// provision is start for an operator's or a role's request: a host with
// stages gets its retries afresh.
func (s *session) provision(ctx context.Context, name string) error {
	if _, ok := s.provOf(name).(provider.Stages); ok {
		s.store.Update(ctx, func(tx *inventory.Tx) error { return tx.Put(s.env.Name, "retries/"+name, 0) })
	}
	return s.start(ctx, name)
}

// start boots one host and moves it to booting, unless it already runs.
func (s *session) start(ctx context.Context, name string) error {
	prov := s.provOf(name)
	if k, known := s.provs.KnownKeys(name); known {
		if _, err := prov.Start(ctx, provider.Spec{Name: name}); err != nil {
			return err
		}
		return s.pinner(k).Record(ctx, name)
	}
	spec, err := s.spec(name)
	if err != nil {
		return err
	}
	built, err := s.build(ctx, spec)
	if err != nil {
		return err
	}
	h, err := s.store.Host(ctx, s.env.Name, name)
	if err != nil {
		return err
	}
	if built.State == provider.Running {
		switch h.State {
		case inventory.Booting, inventory.Booted, inventory.Ready, inventory.Serving:
			return nil // up already
		}
	}
	// A new provisioning: a token for this boot alone. The boot timeout
	// counts from here.
	if err := s.enroll(ctx, &spec); err != nil {
		return err
	}
	if h.State == inventory.Booting { // booting no more (it is off): its boot counts from now
		if err := s.advance(ctx, name, inventory.Failed, "not running while booting: provisioned again"); err != nil {
			return err
		}
	}
	if err := s.advance(ctx, name, inventory.Booting, ""); err != nil {
		return err
	}
	inst, err := prov.Start(ctx, spec)
	if err != nil {
		s.advance(context.WithoutCancel(ctx), name, inventory.Failed, err.Error())
		return err
	}
	return s.record(ctx, name, spec.Role, &inst, "", "")
}

// ImageStop powers hosts off (comma-separated names).
func (r *Runner) ImageStop(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, "image:stop", envName, hosts, func(s *session, n string) error { return s.life().Stop(ctx, n) })
}

// ImageDel deletes hosts (comma-separated names): their namespace or VM and
// files. The inventory keeps them as terminated. A running VM is refused
// unless BOOTED_FORCE=1, which powers it off first.
func (r *Runner) ImageDel(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, "image:del", envName, hosts, func(s *session, n string) error { return s.deleteHost(ctx, n) })
}

// deleteHost deletes host n (BOOTED_FORCE: even running) and records it
// terminated.
func (s *session) deleteHost(ctx context.Context, n string) error {
	if err := s.life().Delete(ctx, n, s.r.Force); err != nil {
		return err
	}
	return s.life().Retire(ctx, n, inventory.Terminated, "")
}

// ImageList lists the hosts the provider has made, with their inventory state.
func (r *Runner) ImageList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error { return r.imageList(ctx, s) })
}

type imageRow struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	Power string `json:"power"`
	State string `json:"state"`
	IP    string `json:"ip"`
	MAC   string `json:"mac"`
	ID    string `json:"id"`
}

func (r *Runner) imageList(ctx context.Context, s *session) error {
	insts, err := s.provs.List(ctx)
	if err != nil {
		return err
	}
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return err
	}
	byName := map[string]inventory.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	rows := make([]imageRow, 0, len(insts))
	for _, in := range insts {
		h := byName[in.Name]
		role := h.Role
		if role == "" {
			role, _ = s.env.RoleOf(in.Name)
		}
		rows = append(rows, imageRow{Name: in.Name, Role: role, Power: string(in.State), State: string(h.State), IP: in.Addr, MAC: in.MAC, ID: in.ID})
	}
	return printRows(r, rows, []string{"NAME", "ROLE", "POWER", "STATE", "IP", "MAC", "ID"}, func(x imageRow) []string {
		return []string{x.Name, x.Role, x.Power, x.State, x.IP, x.MAC, x.ID}
	})
}

// ImageClone makes host NAME a copy of host SRC with fresh MACs and its own
// name: the clone learns who it is from the provider (a seed disk, or the
// controller by its first MAC) and phones home under that name.
func (r *Runner) ImageClone(ctx context.Context, envName, src, name string) error {
	return r.withLock(ctx, envName, "image:clone "+envName+" "+src+" "+name, func(s *session) error {
		c, ok := s.provOf(src).(provider.Cloner)
		if !ok {
			return fmt.Errorf("%s: the %s provider cannot clone hosts (image:build %s %s makes a new one)", s.env.Path, s.env.ProviderOf(src), envName, name)
		}
		spec, err := s.spec(name)
		if err != nil {
			return err
		}
		if err := s.record(ctx, name, spec.Role, nil, inventory.Provisioning, ""); err != nil {
			return err
		}
		inst, err := c.Clone(ctx, src, spec)
		if err != nil {
			s.advance(context.WithoutCancel(ctx), name, inventory.Failed, err.Error())
			return err
		}
		if err := s.record(ctx, name, spec.Role, &inst, inventory.Stopped, ""); err != nil {
			return err
		}
		return r.imageList(ctx, s)
	})
}
