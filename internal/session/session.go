// Package session is booted's composition root: it opens an environment
// once (its env file, the inventory, the deploy key, the controller, every
// provider) and wires the services over it: the hosts' lifecycle, the
// operations over many hosts, deploys, queries, the here-or-through-a-site
// split, the EC2 and REST backends' ports, the monitor's environment and
// a conductor's side of the jobs. Only the target bodies (internal/targets)
// and the daemons' entry points (cmd/*) import it.
package session

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"booted/internal/config"
	"booted/internal/controller"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/provider/registry"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/settings"
)

// Options are what a session is opened with: the settings (BOOTED_*),
// where it writes, and, for the fast tests, how hosts and providers are
// reached.
type Options struct {
	settings.Settings
	Out io.Writer
	Err io.Writer
	// In is what hosts:ssh reads (nil: the standard input).
	In io.Reader
	// HostIO reaches the hosts; nil means over SSH and HTTP (fleet.SSH).
	HostIO HostIO
	// OpenProvider opens an environment's provider; nil means the registry.
	OpenProvider func(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error)
}

// LoadEnv reads envs/NAME.yaml under root.
func LoadEnv(root, name string) (*config.Env, error) {
	return registry.LoadEnv(filepath.Join(root, "envs"), name)
}

// Open opens environment envName: its env file, the inventory (0700), the
// deploy key, the controller's nginx settings and every provider.
func Open(ctx context.Context, r Options, envName string) (*Session, error) {
	env, err := LoadEnv(r.Root, envName)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(r.Inventory, env.Name))
	if err != nil {
		return nil, err
	}
	// The inventory holds keys, pins and the boot logs' tokens: root's only.
	for _, d := range []string{r.Inventory, dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	db := r.Database
	if db == "" {
		db = filepath.Join(r.Inventory, "booted.db")
	}
	store, err := inventory.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	s := &Session{Options: r, Env: env, Dir: dir, Store: store, IO: r.HostIO}
	fail := func(err error) (*Session, error) { store.Close(); return nil, err }
	keyPath := env.SSH.Key
	if keyPath == "" {
		keyPath = filepath.Join(dir, "id_ed25519")
	}
	s.KeyPath = keyPath
	if s.Signer, s.Authorized, err = secrets.DeployKey(keyPath, "booted@"+env.Name); err != nil {
		return fail(err)
	}
	if s.IO == nil {
		s.IO = &fleet.SSH{Auth: remote.Auth{User: env.SSH.User, Signer: s.Signer}, SSHTimeout: env.Timeouts.SSH.D(), PingTimeout: env.Timeouts.Ping.D(), Parallel: r.Parallel}
	}
	s.Ctl = &controller.Controller{
		Env: env.Name, Listen: env.CallbackAddr(), Dir: filepath.Join(dir, "nginx"),
		BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(r.Root, "nginx", "controller.conf.tmpl"),
	}
	if s.Provs, err = s.openProviders(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// dryRunPlans are the targets (by their lock's title) that print a plan
// under BOOTED_DRY_RUN=1; every other target that changes something
// refuses it rather than act.
var dryRunPlans = []string{"env:start ", "env:startWorker ", "env:stop ", "env:destroy ", "service:deploy ", "service:rollback ", "service:start ", "service:stop "}

// Change is View for an operation that changes the environment: it
// holds the environment's lock for what (BOOTED_LOCK_WAIT bounds the wait
// for another operation holding it) while fn runs. Under BOOTED_DRY_RUN=1
// only the operations with a plan run (dryRunPlans), and the others are
// refused before anything is opened.
func Change(ctx context.Context, o Options, envName, what string, fn func(s *Session) error) error {
	if err := dryRunGate(o, what); err != nil {
		return err
	}
	return View(ctx, o, envName, func(s *Session) error { return s.locked(ctx, what, fn) })
}

// Change runs fn on s under the environment's lock for what (and the
// dry-run gate): a change on a session opened once (api:serve's).
func (s *Session) Change(ctx context.Context, what string, fn func(s *Session) error) error {
	if err := dryRunGate(s.Options, what); err != nil {
		return err
	}
	return s.locked(ctx, what, fn)
}

// locked runs fn on s holding the environment's lock for what.
func (s *Session) locked(ctx context.Context, what string, fn func(s *Session) error) error {
	l, err := s.Lock(ctx, what)
	if err != nil {
		return err
	}
	defer l.Release()
	return fn(s)
}

func dryRunGate(o Options, what string) error {
	if o.DryRun && !slices.ContainsFunc(dryRunPlans, func(p string) bool { return strings.HasPrefix(what, p) }) {
		return fmt.Errorf("%s: BOOTED_DRY_RUN=1, and this target has no dry run: nothing was done (the targets with one: env:startAll, env:startMin, env:startWorker, env:stop, env:destroy, service:deploy, service:rollback, service:start, service:stop)", strings.Fields(what)[0])
	}
	return nil
}

// View opens envName, runs fn and closes it.
func View(ctx context.Context, o Options, envName string, fn func(s *Session) error) error {
	s, err := Open(ctx, o, envName)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}
