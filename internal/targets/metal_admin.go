package targets

import (
	"context"
	"encoding/json"
	"fmt"

	"booted/internal/metaladmin"
	"booted/internal/osimage"
)

// OSImageImport imports an installer ISO into ENV as osimage NAME ("": the
// name it reads off the ISO, distro-version-arch) and serves it (xCAT3's
// copycds, Cobbler's import).
func (r *Runner) OSImageImport(ctx context.Context, envName, iso, name string) error {
	if name != "" {
		if err := osimage.CheckName(name); err != nil {
			return err
		}
	}
	return r.withLock(ctx, envName, "osimage:import "+envName+" "+iso, func(s *session) error {
		a, err := s.Metal("osimage:import")
		if err != nil {
			return err
		}
		in, err := a.ImportOSImage(ctx, iso, name)
		if err != nil {
			return err
		}
		if err := s.StartController(ctx); err != nil {
			return fmt.Errorf("osimage %s is imported, but not served: %w", in.Name, err)
		}
		if r.JSON {
			return json.NewEncoder(r.Out).Encode(in) // one line
		}
		fmt.Fprintf(r.Out, "%s: imported %s %s %s from %s (%s install, %d MB); served at %s/metal/images/%s/; install a node from it with node:deploy %s NODE %s\n",
			in.Name, in.Product, in.Version, in.Arch, iso, in.Method, in.Bytes>>20, "http://"+s.Env.CallbackAddr(), in.Name, envName, in.Name)
		return nil
	})
}

// OSImageList lists the osimages of ENV: the one booted builds (an image
// written by booted's installer) and the imported ones, with the nodes that
// install from each.
func (r *Runner) OSImageList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		a, err := s.Metal("osimage:list")
		if err != nil {
			return err
		}
		rows, err := a.OSImages()
		if err != nil {
			return err
		}
		return printRows(r, rows, metaladmin.OSImageHeader, metaladmin.OSImageRow.Cells)
	})
}

// OSImageDel removes imported osimage NAME of ENV; one a node installs
// from (or will, at its next deploy) is refused.
func (r *Runner) OSImageDel(ctx context.Context, envName, name string) error {
	return r.withLock(ctx, envName, "osimage:del "+envName+" "+name, func(s *session) error {
		a, err := s.Metal("osimage:del")
		if err != nil {
			return err
		}
		if err := a.DeleteOSImage(name); err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "%s: deleted\n", name)
		return nil
	})
}

// NodeDeploy installs node NODE of ENV from osimage OSIMAGE (xCAT3's
// deploy NODE --osimage) and follows it to ready: its next deploys use
// that osimage too.
func (r *Runner) NodeDeploy(ctx context.Context, envName, node, img string) error {
	if err := r.withLock(ctx, envName, "node:deploy "+envName+" "+node, func(s *session) error {
		a, err := s.Metal("node:deploy")
		if err != nil {
			return err
		}
		// A node installed from another osimage is installed again.
		return a.ChooseOSImage(ctx, node, img)
	}); err != nil {
		return err
	}
	if err := r.ImageStart(ctx, envName, node); err != nil {
		return err
	}
	// Follow it: its stages, its phone-home, then ping and SSH.
	if err := r.HostsLogged(ctx, envName); err != nil {
		return err
	}
	if err := r.HostsFilter(ctx, envName); err != nil {
		return err
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		h, err := s.Store.Host(ctx, s.Env.Name, node)
		if err != nil {
			return err
		}
		if !h.State.Up() {
			return fmt.Errorf("node %s: %s: %s", node, h.State, h.Reason)
		}
		return nil
	})
}

// NodeCreate records node NODE of ENV, listed in its env file, in the
// inventory after checking its BMC answers (xCAT3's create).
func (r *Runner) NodeCreate(ctx context.Context, envName, node string) error {
	return r.eachHost(ctx, "node:create", envName, node, func(s *session, n string) error {
		a, err := s.Metal("node:create")
		if err == nil {
			err = a.CheckListed(n)
		}
		if err != nil {
			return err
		}
		return s.BuildHost(ctx, n)
	})
}

// NodeDel powers node NODE off, forgets its install and its osimage
// choice, and marks it terminated (xCAT3's delete).
func (r *Runner) NodeDel(ctx context.Context, envName, node string) error {
	return r.eachHost(ctx, "node:del", envName, node, func(s *session, n string) error {
		if _, err := s.Metal("node:del"); err != nil {
			return err
		}
		return s.DeleteHost(ctx, n)
	})
}

// NetCreate makes network NAME of ENV: its bridge and its dnsmasq
// (xCAT3's network-create).
func (r *Runner) NetCreate(ctx context.Context, envName, name string) error {
	return r.withLock(ctx, envName, "net:create "+envName+" "+name, func(s *session) error {
		a, err := s.Metal("net:create")
		if err != nil {
			return err
		}
		if err := a.CreateNetwork(ctx, name); err != nil {
			return err
		}
		return printRows(r, a.Networks(), metaladmin.NetHeader, metaladmin.NetRow.Cells)
	})
}

// NetDel stops network NAME's dnsmasq and removes its bridge; refused
// while a node on it is in use.
func (r *Runner) NetDel(ctx context.Context, envName, name string) error {
	return r.withLock(ctx, envName, "net:del "+envName+" "+name, func(s *session) error {
		a, err := s.Metal("net:del")
		if err != nil {
			return err
		}
		if err := a.DeleteNetwork(ctx, name); err != nil {
			return err
		}
		return printRows(r, a.Networks(), metaladmin.NetHeader, metaladmin.NetRow.Cells)
	})
}
