package targets

import (
	"context"
	"fmt"

	sess "booted/internal/session"

	"booted/internal/inventory"
	"booted/internal/provider"
)

// ImageBuild makes hosts (comma-separated names) without starting them.
func (r *Runner) ImageBuild(ctx context.Context, envName, hosts string) error {
	return sess.EachHost(ctx, r.Options, "image:build", envName, hosts, func(s *sess.Session, n string) error { return s.BuildHost(ctx, n) })
}

// ImageStop powers hosts off (comma-separated names).
func (r *Runner) ImageStop(ctx context.Context, envName, hosts string) error {
	return sess.EachHost(ctx, r.Options, "image:stop", envName, hosts, func(s *sess.Session, n string) error { return s.Life().Stop(ctx, n) })
}

// ImageDel deletes hosts (comma-separated names): their namespace or VM and
// files. The inventory keeps them as terminated. A running VM is refused
// unless BOOTED_FORCE=1, which powers it off first.
func (r *Runner) ImageDel(ctx context.Context, envName, hosts string) error {
	return sess.EachHost(ctx, r.Options, "image:del", envName, hosts, func(s *sess.Session, n string) error { return s.DeleteHost(ctx, n) })
}

// ImageList lists the hosts the provider has made, with their inventory state.
func (r *Runner) ImageList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error { return s.PrintImages(ctx) })
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
		return s.PrintImages(ctx)
	})
}

// ImageStart boots hosts (comma-separated names), building them first if
// needed. A host already running is left alone.
func (r *Runner) ImageStart(ctx context.Context, envName, hosts string) error {
	return sess.ImageStart(ctx, r.Options, envName, hosts)
}
