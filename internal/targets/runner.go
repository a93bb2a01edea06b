package targets

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/config"
	"booted/internal/controller"
	"booted/internal/discovery"
	"booted/internal/ec2backend"
	"booted/internal/ec2host"
	"booted/internal/envlock"
	"booted/internal/fleet"
	"booted/internal/hostops"
	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/lifecycle"
	"booted/internal/metadata"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/registry"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/service"
	"booted/internal/settings"
)

// Runner carries what every target needs: the settings (BOOTED_*) and
// where to write.
type Runner struct {
	settings.Settings
	Out io.Writer
	Err io.Writer
	// In is what hosts:ssh reads (nil: the standard input).
	In io.Reader
	// io reaches the hosts; nil means over SSH and HTTP.
	io hostIO
	// openProvider opens an environment's provider; nil means the registry.
	openProvider func(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error)
}

// FromEnviron makes a Runner from the BOOTED_* variables, refusing values
// they do not accept.
func FromEnviron() (*Runner, error) {
	s, err := settings.FromEnviron()
	if err != nil {
		return nil, err
	}
	return &Runner{Settings: s, Out: os.Stdout, Err: os.Stderr}, nil
}

// session is one target's view of one environment.
type session struct {
	r     *Runner
	env   *config.Env
	dir   string // inventory/ENV, absolute
	store *inventory.Store
	// provs are the environment's providers and its roles', by type: where
	// a host's provider is resolved.
	provs      *lifecycle.Providers
	io         hostIO
	signer     ssh.Signer
	authorized []byte
	keyPath    string // the deploy key's private half
	ctl        *controller.Controller
	q          *hostquery.Q    // made at its first use (query)
	o          *hostops.Runner // made at its first use (ops)
	// conducting is the site this session is a conductor of ("": the
	// controller).
	conducting string
	// nats is the session's connection to the env file's NATS cluster
	// as the controller (controllerNATS), made at its first use.
	nats struct {
		sync.Mutex
		nc *nats.Conn
		js jetstream.JetStream
	}
}

// loadEnv reads envs/NAME.yaml.
func (r *Runner) loadEnv(name string) (*config.Env, error) {
	return registry.LoadEnv(filepath.Join(r.Root, "envs"), name)
}

func (r *Runner) open(ctx context.Context, envName string) (*session, error) {
	env, err := r.loadEnv(envName)
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
	store, err := inventory.Open(ctx, filepath.Join(r.Inventory, "booted.db"))
	if err != nil {
		return nil, err
	}
	s := &session{r: r, env: env, dir: dir, store: store, io: r.io}
	fail := func(err error) (*session, error) { store.Close(); return nil, err }
	keyPath := env.SSH.Key
	if keyPath == "" {
		keyPath = filepath.Join(dir, "id_ed25519")
	}
	s.keyPath = keyPath
	if s.signer, s.authorized, err = secrets.DeployKey(keyPath, "booted@"+env.Name); err != nil {
		return fail(err)
	}
	if s.io == nil {
		s.io = &fleet.SSH{Auth: remote.Auth{User: env.SSH.User, Signer: s.signer}, SSHTimeout: env.Timeouts.SSH.D(), PingTimeout: env.Timeouts.Ping.D()}
	}
	s.ctl = &controller.Controller{
		Env: env.Name, Listen: env.CallbackAddr(), Dir: filepath.Join(dir, "nginx"),
		BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(r.Root, "nginx", "controller.conf.tmpl"),
	}
	if s.provs, err = s.openProvider(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *session) Close() error {
	if c, ok := s.io.(io.Closer); ok && s.io != s.r.io {
		c.Close() // the connections kept to the hosts
	}
	s.nats.Lock()
	if s.nats.nc != nil {
		s.nats.nc.Close()
	}
	s.nats.Unlock()
	return s.store.Close()
}

// openProvider opens the environment's provider through the registry,
// installing what it (and the controller) needs.
func (s *session) openProvider(ctx context.Context) (*lifecycle.Providers, error) {
	var ports []int
	if w := s.env.Roles[config.RoleWorkers]; w != nil && w.Service != "" {
		if def, err := s.loadService(w.Service); err == nil {
			ports = append(ports, def.Port)
		}
	}
	o := provider.Options{
		Dir: s.dir, Root: s.r.Root, Log: s.r.Err,
		Install: func(ctx context.Context, need map[string]string) error {
			return pkgs.Ensure(ctx, s.r.Err, pkgs.Merge(controller.Needs, metadata.Needs, need))
		},
		Served: s.ctl.KickstartDir, ServedURL: "http://" + s.env.CallbackAddr() + "/kickstart/", Ports: ports,
		FailedURL:  "http://" + s.env.CallbackAddr() + bootlog.FailedPath,
		BaseURL:    "http://" + s.env.CallbackAddr(),
		VBoxManage: s.r.VBoxManage, VBoxTFTP: s.r.VBoxTFTP, QemuAppend: s.r.QemuAppend,
	}
	open := s.r.openProvider
	if open == nil {
		open = registry.Open
	}
	prov, err := open(ctx, s.env, o)
	if err != nil {
		return nil, err
	}
	provs, err := registry.OpenRoles(ctx, s.env, o)
	if err != nil {
		return nil, err
	}
	provs[s.env.Provider.Type] = prov
	return &lifecycle.Providers{Env: s.env, ByType: provs, Site: s.sitedProv}, nil
}

// life is s's hosts' lifecycle (lifecycle.Hosts).
func (s *session) life() *lifecycle.Hosts {
	return &lifecycle.Hosts{Env: s.env, Store: s.store, Provs: s.provs, Drain: s.dep().UpdateLB, Log: s.r.Err, Spec: s.spec,
		Pin: func(ctx context.Context, k provider.KnownKeys, names ...string) error {
			return s.pinner(k).Record(ctx, names...)
		}}
}

// provOf returns the provider of host name: its role's, or the
// environment's; for the host of a site with a network of its own, that
// provider through the site's conductors (sited.go).
func (s *session) provOf(name string) provider.Provider { return s.provs.Of(name) }

// prepare runs every provider's preparation (bridges, served files).
func (s *session) prepare(ctx context.Context) error {
	for _, p := range s.provs.All() {
		if pp, ok := p.(provider.Preparer); ok {
			if err := pp.Prepare(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// reload reads the env file again and opens its provider (the monitor's
// SIGHUP): nothing changes when either fails.
func (s *session) reload(ctx context.Context) error {
	env, err := s.r.loadEnv(s.env.Name)
	if err != nil {
		return err
	}
	old := s.env
	s.env = env
	provs, err := s.openProvider(ctx)
	if err != nil {
		s.env = old
		return err
	}
	s.provs = provs
	return nil
}

// startController makes sure the controller's nginx is up, for providers
// whose hosts phone home.
func (s *session) startController(ctx context.Context) error {
	if !s.provs.AnyPhonesHome() {
		return nil
	}
	if err := s.prepare(ctx); err != nil {
		return err
	}
	return s.ctl.Ensure(ctx)
}

// spec is what the provider needs to make host name (no token: see enroll).
func (s *session) spec(name string) (provider.Spec, error) {
	role, _ := s.env.RoleOf(name)
	spec := provider.Spec{Name: name, Role: role, AuthorizedKey: s.authorized}
	instance := false
	if h, err := s.store.Host(context.Background(), s.env.Name, name); err == nil && h.Role == ec2host.Role {
		spec.Role, spec.Instance, instance = h.Role, true, true
		if t, ok := ec2backend.Type(s.env, h.Attrs[ec2host.AttrType]); ok {
			spec.Size = provider.Size{CPUs: t.VCPUs, MemoryMB: t.MemoryMiB, DiskGB: t.DiskGB}
		}
		if k := h.Attrs[ec2host.AttrAuthorized]; k != "" { // launched with a key pair: its key next to the deploy key
			spec.AuthorizedKey = []byte(strings.TrimSpace(string(s.authorized)) + "\n" + k + "\n")
		}
	}
	if _, known := s.provs.KnownKeys(name); known {
		return spec, nil // it does not phone home
	}
	ph, err := bootlog.PhoneHome{
		URL: s.callbackURL(name), Env: s.env.Name, Name: name, Retry: s.env.Callback.Retry.D(), UserData: instance,
	}.Render(filepath.Join(s.r.Root, "kickstart", "phone-home.sh.tmpl"))
	spec.PhoneHome = ph
	return spec, err
}

func (s *session) discoverer() *discovery.Discoverer {
	d := &discovery.Discoverer{
		Store: s.store, Env: s.env.Name, Log: s.ctl.BootLog,
		Declared: s.env.RoleOf, Provider: s.env.Provider.Type,
		Logf: func(f string, a ...any) { fmt.Fprintf(s.r.Err, f+"\n", a...) },
	}
	if s.sitesCallBack() { // and the callbacks the sites' conductors took
		d.Sited, d.SiteOf = s.sitedCallbacks, s.siteOfHost
	}
	return d
}

func (s *session) loadService(svc string) (*service.Def, error) {
	return service.Load(s.r.Root, svc)
}

// dryRunPlans are the targets (by their lock's title) that print a plan
// under BOOTED_DRY_RUN=1; every other target that changes something
// refuses it rather than act.
var dryRunPlans = []string{"env:start ", "env:startWorker ", "env:stop ", "env:destroy ", "service:deploy ", "service:rollback ", "service:start ", "service:stop "}

// withLock is withEnv for a target that changes the environment: it holds
// the environment's lock (BOOTED_LOCK_WAIT bounds the wait for another
// operation holding it) while fn runs.
func (r *Runner) withLock(ctx context.Context, envName, what string, fn func(s *session) error) error {
	if r.DryRun && !slices.ContainsFunc(dryRunPlans, func(p string) bool { return strings.HasPrefix(what, p) }) {
		return fmt.Errorf("%s: BOOTED_DRY_RUN=1, and this target has no dry run: nothing was done (the targets with one: env:startAll, env:startMin, env:startWorker, env:stop, env:destroy, service:deploy, service:rollback, service:start, service:stop)", strings.Fields(what)[0])
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		l, err := s.lock(ctx, what)
		if err != nil {
			return err
		}
		defer l.Release()
		return fn(s)
	})
}

// lock takes the environment's lock for what.
func (s *session) lock(ctx context.Context, what string) (*envlock.Lock, error) {
	return envlock.Acquire(ctx, filepath.Join(s.dir, "lock"), what, s.r.LockWait, func(holder string) {
		fmt.Fprintf(s.r.Err, "%s: waiting (up to %v) for the operation holding %s: %s\n", what, s.r.LockWait, s.env.Name, holder)
	})
}

// withEnv opens envName, runs fn and closes it.
func (r *Runner) withEnv(ctx context.Context, envName string, fn func(s *session) error) error {
	s, err := r.open(ctx, envName)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}
