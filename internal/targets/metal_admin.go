package targets

import (
	"context"

	sess "booted/internal/session"

	"booted/internal/metaladmin"
)

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

// OSImageImport imports an installer ISO into ENV as osimage NAME ("": the
// name it reads off the ISO, distro-version-arch) and serves it (xCAT3's
// copycds, Cobbler's import).
func (r *Runner) OSImageImport(ctx context.Context, envName, iso, name string) error {
	return sess.OSImageImport(ctx, r.Options, envName, iso, name)
}

// OSImageDel removes imported osimage NAME of ENV; one a node installs
// from (or will, at its next deploy) is refused.
func (r *Runner) OSImageDel(ctx context.Context, envName, name string) error {
	return sess.OSImageDel(ctx, r.Options, envName, name)
}

// NodeDeploy installs node NODE of ENV from osimage OSIMAGE (xCAT3's
// deploy NODE --osimage) and follows it to ready: its next deploys use
// that osimage too.
func (r *Runner) NodeDeploy(ctx context.Context, envName, node, img string) error {
	return sess.NodeDeploy(ctx, r.Options, envName, node, img)
}

// NodeCreate records node NODE of ENV, listed in its env file, in the
// inventory after checking its BMC answers (xCAT3's create).
func (r *Runner) NodeCreate(ctx context.Context, envName, node string) error {
	return sess.NodeCreate(ctx, r.Options, envName, node)
}

// NodeDel powers node NODE off, forgets its install and its osimage
// choice, and marks it terminated (xCAT3's delete).
func (r *Runner) NodeDel(ctx context.Context, envName, node string) error {
	return sess.NodeDel(ctx, r.Options, envName, node)
}

// NetCreate makes network NAME of ENV: its bridge and its dnsmasq
// (xCAT3's network-create).
func (r *Runner) NetCreate(ctx context.Context, envName, name string) error {
	return sess.NetCreate(ctx, r.Options, envName, name)
}

// NetDel stops network NAME's dnsmasq and removes its bridge; refused
// while a node on it is in use.
func (r *Runner) NetDel(ctx context.Context, envName, name string) error {
	return sess.NetDel(ctx, r.Options, envName, name)
}
