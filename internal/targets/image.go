package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"booted/internal/bootlog"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// eachHost opens ENV and calls fn for each of the comma-separated hosts,
// then lists the environment's hosts.
func (r *Runner) eachHost(ctx context.Context, envName, hosts string, fn func(s *session, name string) error) error {
	ns, err := names(hosts)
	if err != nil {
		return err
	}
	return r.withEnv(ctx, envName, func(s *session) error {
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
	return r.eachHost(ctx, envName, hosts, func(s *session, n string) error {
		spec, err := s.spec(n)
		if err != nil {
			return err
		}
		_, err = s.build(ctx, spec)
		return err
	})
}

// build makes the host through the provider and records it; it returns
// the instance as the provider sees it (running or not).
func (s *session) build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	name := spec.Name
	h, err := s.store.Host(ctx, s.env.Name, name)
	fresh := errors.Is(err, inventory.ErrNotFound) || h.State == inventory.Terminated
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return provider.Instance{}, err
	}
	if fresh {
		if err := s.setState(ctx, name, spec.Role, inventory.Provisioning, ""); err != nil {
			return provider.Instance{}, err
		}
	}
	inst, err := s.prov.Build(ctx, spec)
	if err != nil {
		if fresh {
			s.setState(context.WithoutCancel(ctx), name, spec.Role, inventory.Failed, err.Error())
		}
		return inst, err
	}
	return inst, s.store.Update(ctx, func(tx *inventory.Tx) error {
		return tx.Modify(s.env.Name, name, func(h *inventory.Host) error {
			s.fill(h, spec.Role, inst)
			if fresh {
				h.State = inventory.Stopped
			}
			return nil
		})
	})
}

func (s *session) fill(h *inventory.Host, role string, inst provider.Instance) {
	if h.Role == "" {
		h.Role = role
	}
	h.Provider, h.ProviderID, h.MAC = s.env.Provider.Type, inst.ID, inst.MAC
	if h.Addr == "" {
		h.Addr = inst.Addr
	}
	h.Port = s.env.SSH.Port
}

func (s *session) setState(ctx context.Context, name, role string, st inventory.State, reason string) error {
	return s.store.Update(ctx, func(tx *inventory.Tx) error {
		return tx.Modify(s.env.Name, name, func(h *inventory.Host) error {
			if h.Role == "" {
				h.Role = role
			}
			h.Provider = s.env.Provider.Type
			h.State, h.Reason = st, reason
			return nil
		})
	})
}

// ImageStart boots hosts (comma-separated names), building them first if
// needed. A host already running is left alone.
func (r *Runner) ImageStart(ctx context.Context, envName, hosts string) error {
	started := false
	return r.eachHost(ctx, envName, hosts, func(s *session, n string) error {
		if !started {
			if err := s.startController(ctx); err != nil {
				return err
			}
			started = true
		}
		return s.start(ctx, n)
	})
}

// start boots one host and moves it to booting, unless it already runs.
func (s *session) start(ctx context.Context, name string) error {
	if k, ok := s.prov.(knower); ok {
		if _, err := s.prov.Start(ctx, provider.Spec{Name: name}); err != nil {
			return err
		}
		return s.discoverKnown(ctx, k, name)
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
	// The boot timeout counts from here.
	if err := s.setState(ctx, name, spec.Role, inventory.Booting, ""); err != nil {
		return err
	}
	inst, err := s.prov.Start(ctx, spec)
	if err != nil {
		s.setState(context.WithoutCancel(ctx), name, spec.Role, inventory.Failed, err.Error())
		return err
	}
	return s.store.Update(ctx, func(tx *inventory.Tx) error {
		return tx.Modify(s.env.Name, name, func(h *inventory.Host) error { s.fill(h, spec.Role, inst); return nil })
	})
}

// ImageStop powers hosts off (comma-separated names).
func (r *Runner) ImageStop(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, envName, hosts, func(s *session, n string) error { return s.stop(ctx, n) })
}

func (s *session) stop(ctx context.Context, name string) error {
	if err := s.prov.Stop(ctx, name); err != nil {
		if errors.Is(err, provider.ErrUnsupported) {
			fmt.Fprintf(s.r.Err, "%v\n", err)
			return nil
		}
		if errors.Is(err, provider.ErrNoInstance) {
			return fmt.Errorf("host %s of %s: nothing to stop: it was never built (see image:list %s)", name, s.env.Name, s.env.Name)
		}
		return err
	}
	h, err := s.store.Host(ctx, s.env.Name, name)
	if err := s.moveTo(ctx, name, inventory.Stopped, ""); err != nil {
		return err
	}
	if err == nil && h.State == inventory.Serving {
		return s.updateLB(ctx) // the serving set changed
	}
	return nil
}

// moveTo walks a host to stopped or terminated through the states the
// lifecycle requires on the way (a serving host drains first).
func (s *session) moveTo(ctx context.Context, name string, to inventory.State, reason string) error {
	return s.store.Update(ctx, func(tx *inventory.Tx) error {
		h, err := tx.Host(s.env.Name, name)
		if errors.Is(err, inventory.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		path := []inventory.State{to}
		switch {
		case h.State == inventory.Serving:
			path = []inventory.State{inventory.Draining, inventory.Stopped, to}
		case to == inventory.Terminated && !inventory.CanMove(h.State, to):
			path = []inventory.State{inventory.Stopped, to}
		}
		for _, st := range path {
			if h.State == st {
				continue
			}
			if err := tx.Modify(s.env.Name, name, func(h *inventory.Host) error { h.State, h.Reason = st, reason; return nil }); err != nil {
				return err
			}
			h.State = st
		}
		return nil
	})
}

// ImageDel deletes hosts (comma-separated names): their namespace or VM and
// files. The inventory keeps them as terminated.
func (r *Runner) ImageDel(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, envName, hosts, func(s *session, n string) error {
		if r.Force {
			if err := s.prov.Stop(ctx, n); err != nil && !errors.Is(err, provider.ErrNoInstance) {
				return err
			}
		}
		if err := s.prov.Delete(ctx, n); err != nil {
			return err
		}
		return s.moveTo(ctx, n, inventory.Terminated, "")
	})
}

// ImageList lists the hosts the provider has made, with their inventory state.
func (r *Runner) ImageList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error { return r.imageList(ctx, s) })
}

type imageRow struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Power     string `json:"power"`
	State     string `json:"state"`
	IP        string `json:"ip"`
	MAC       string `json:"mac"`
	ID        string `json:"id"`
	Inventory string `json:"-"`
}

func (r *Runner) imageList(ctx context.Context, s *session) error {
	insts, err := s.prov.List(ctx)
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

// cloner is implemented by providers that can copy a host.
type cloner interface {
	Clone(ctx context.Context, src string, s provider.Spec) (provider.Instance, error)
}

// ImageClone makes host NAME a copy of host SRC with fresh MACs and its own
// name: the controller tells the clone who it is (by its first MAC) when it
// boots, and it phones home under that name.
func (r *Runner) ImageClone(ctx context.Context, envName, src, name string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		c, ok := s.prov.(cloner)
		if !ok {
			return fmt.Errorf("%s: the %s provider cannot clone hosts (image:build %s %s makes a new one)", s.env.Path, s.env.Provider.Type, envName, name)
		}
		spec, err := s.spec(name)
		if err != nil {
			return err
		}
		if err := s.setState(ctx, name, spec.Role, inventory.Provisioning, ""); err != nil {
			return err
		}
		inst, err := c.Clone(ctx, src, spec)
		if err != nil {
			s.setState(context.WithoutCancel(ctx), name, spec.Role, inventory.Failed, err.Error())
			return err
		}
		id := fmt.Sprintf("name=%s\ntoken=%s\n", name, bootlog.Token(s.secret, s.env.Name, name))
		idDir := filepath.Join(s.dir, "kickstart", "identity")
		if err := os.MkdirAll(idDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(idDir, strings.ToLower(inst.MAC)), []byte(id), 0o644); err != nil {
			return err
		}
		err = s.store.Update(ctx, func(tx *inventory.Tx) error {
			return tx.Modify(s.env.Name, name, func(h *inventory.Host) error {
				s.fill(h, spec.Role, inst)
				h.State = inventory.Stopped
				return nil
			})
		})
		if err != nil {
			return err
		}
		return r.imageList(ctx, s)
	})
}
