package targets

import (
	"context"
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
	return r.eachHost(ctx, "image:build", envName, hosts, func(s *session, n string) error { return s.BuildHost(ctx, n) })
}

// ImageStart boots hosts (comma-separated names), building them first if
// needed. A host already running is left alone.
func (r *Runner) ImageStart(ctx context.Context, envName, hosts string) error {
	started := false
	return r.eachHost(ctx, "image:start", envName, hosts, func(s *session, n string) error {
		if !started {
			if err := s.StartController(ctx); err != nil {
				return err
			}
			started = true
		}
		return s.Life().Provision(ctx, n)
	})
}

// ImageStop powers hosts off (comma-separated names).
func (r *Runner) ImageStop(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, "image:stop", envName, hosts, func(s *session, n string) error { return s.Life().Stop(ctx, n) })
}

// ImageDel deletes hosts (comma-separated names): their namespace or VM and
// files. The inventory keeps them as terminated. A running VM is refused
// unless BOOTED_FORCE=1, which powers it off first.
func (r *Runner) ImageDel(ctx context.Context, envName, hosts string) error {
	return r.eachHost(ctx, "image:del", envName, hosts, func(s *session, n string) error { return s.DeleteHost(ctx, n) })
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
	insts, err := s.Provs.List(ctx)
	if err != nil {
		return err
	}
	hosts, err := s.Store.Hosts(ctx, s.Env.Name)
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
			role, _ = s.Env.RoleOf(in.Name)
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
		c, ok := s.ProvOf(src).(provider.Cloner)
		if !ok {
			return fmt.Errorf("%s: the %s provider cannot clone hosts (image:build %s %s makes a new one)", s.Env.Path, s.Env.ProviderOf(src), envName, name)
		}
		spec, err := s.Spec(name)
		if err != nil {
			return err
		}
		if err := s.Life().Record(ctx, name, spec.Role, nil, inventory.Provisioning, ""); err != nil {
			return err
		}
		inst, err := c.Clone(ctx, src, spec)
		if err != nil {
			s.Advance(context.WithoutCancel(ctx), name, inventory.Failed, err.Error())
			return err
		}
		if err := s.Life().Record(ctx, name, spec.Role, &inst, inventory.Stopped, ""); err != nil {
			return err
		}
		return r.imageList(ctx, s)
	})
}
