package targets

import (
	"context"
	"fmt"
	"io"

	"booted/internal/files"
	sess "booted/internal/session"

	"booted/internal/metallab"
	"booted/internal/pkgs"
	"booted/internal/provider"
)

// MetalLab makes an emulated machine for every node of a baremetal ENV: a
// qemu machine with an empty disk that netboots, and an ipmi_sim BMC that
// powers it (passwords made where booted reads them, when missing).
func (r *Runner) MetalLab(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "metal:lab "+envName, func(s *session) error {
		if err := pkgs.Ensure(ctx, r.Err, metallab.Needs); err != nil {
			return err
		}
		lab, err := metallab.ForEnv(s.Env, s.Dir)
		if err != nil {
			return err
		}
		for _, m := range lab.Machines {
			if m.Netns != "" { // a site's machines are on its network: made with the environment's
				if err := s.Prepare(ctx); err != nil {
					return err
				}
				break
			}
		}
		if err := lab.Up(ctx); err != nil {
			return err
		}
		if !r.JSON {
			for _, m := range lab.Machines {
				where := ""
				if m.Netns != "" {
					where = " in " + m.Netns + " (its site's network)"
				}
				fmt.Fprintf(r.Out, "%s: machine %s, BMC 127.0.0.1:%d%s (user %s, password in %s)\n", envName, m.Name, m.BMCPort, where, m.User, lab.PasswordFile(m.Name))
			}
		}
		return nil
	})
}

// MetalLabDown stops and removes the emulated machines of ENV.
func (r *Runner) MetalLabDown(ctx context.Context, envName string) error {
	return r.withLock(ctx, envName, "metal:labDown "+envName, func(s *session) error {
		lab, err := metallab.ForEnv(s.Env, s.Dir)
		if err != nil {
			return err
		}
		return lab.Down(ctx)
	})
}

// NodeSecret sets node NODE's BMC password, read from standard input (one
// line), into inventory/ENV/bmc/NODE (0600): never on a command line.
func (r *Runner) NodeSecret(ctx context.Context, envName, node string, in io.Reader) error {
	return r.withLock(ctx, envName, "node:secret "+envName+" "+node, func(s *session) error {
		a, err := s.Metal("node:secret")
		if err != nil {
			return err
		}
		path, err := a.SetBMCPassword(node, in)
		if err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "%s: BMC password kept in %s\n", node, path)
		return nil
	})
}

// HostsConsole prints the console log of host HOST of ENV.
func (r *Runner) HostsConsole(ctx context.Context, envName, host string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		c, ok := s.ProvOf(host).(provider.Console)
		if !ok {
			return fmt.Errorf("%s: the %s provider of %s keeps no console logs", s.Env.Path, s.Env.ProviderOf(host), host)
		}
		b, err := files.Tail(c.ConsoleLog(host), 1<<20) // the last MiB, not through a link
		if err != nil {
			return fmt.Errorf("host %s: no console log (%v)", host, err)
		}
		_, err = r.Out.Write(b)
		return err
	})
}

// Power switches host NODE of ENV (on, off, cycle) or shows its power
// (status): a bare-metal node through its BMC; a host of a provider
// without one (local hosts, qemu and VirtualBox VMs) through the provider,
// as image:stop and image:start do (on boots and enrolls it again).
func (r *Runner) Power(ctx context.Context, what, envName, node string) error {
	return sess.Power(ctx, r.Options, what, envName, node)
}
