package targets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/config"
	"booted/internal/controller"
	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/kickstart"
	"booted/internal/provider"
	"booted/internal/provider/local"
	"booted/internal/provider/qemu"
	"booted/internal/provider/static"
	"booted/internal/provider/vbox"
	"booted/internal/secrets"
)

// Settings, each an environment variable.
const (
	// EnvOutput set to "json" makes listings print JSON instead of a table.
	EnvOutput = "BOOTED_OUTPUT"
	// EnvInventory is the directory of runtime state; default ./inventory.
	EnvInventory = "BOOTED_INVENTORY"
	// EnvRoot is the project directory holding envs/, kickstart/ and nginx/;
	// default the current directory.
	EnvRoot = "BOOTED_ROOT"
	// EnvParallel bounds how many hosts an operation works on at once;
	// default 64.
	EnvParallel = "BOOTED_PARALLEL"
	// EnvRetry set to "failed" runs a target only on the hosts it failed on
	// last time.
	EnvRetry = "BOOTED_RETRY"
	// EnvJUnit is a file service:test writes JUnit XML to.
	EnvJUnit = "BOOTED_JUNIT"
	// EnvBatch is the size of a rolling deploy's batches: a count, a
	// percentage ("25%") or "all"; default 1.
	EnvBatch = "BOOTED_BATCH"
	// EnvAcceptNew set to 1 pins the key of a static host seen for the first
	// time instead of refusing it.
	EnvAcceptNew = "BOOTED_ACCEPT_NEW"
)

// Runner carries what every target needs.
type Runner struct {
	// Root holds envs/, kickstart/ and nginx/.
	Root string
	// Inventory is the runtime state directory.
	Inventory string
	// JSON makes listings print JSON.
	JSON bool
	// Parallel bounds concurrent hosts; zero means 64.
	Parallel int
	// RetryFailed runs multi-host targets only on the hosts they failed on.
	RetryFailed bool
	// JUnit, if set, is where service:test writes JUnit XML.
	JUnit string
	// AcceptNew pins unknown static hosts' keys on first use.
	AcceptNew bool
	// Batch is BOOTED_BATCH.
	Batch string
	// Force (BOOTED_FORCE=1) lets image:del power off a running VM first.
	Force bool
	Out   io.Writer
	Err   io.Writer
}

// FromEnviron makes a Runner from the BOOTED_* variables.
func FromEnviron() *Runner {
	r := &Runner{Root: os.Getenv(EnvRoot), Inventory: os.Getenv(EnvInventory), Out: os.Stdout, Err: os.Stderr}
	if r.Root == "" {
		r.Root = "."
	}
	if r.Inventory == "" {
		r.Inventory = filepath.Join(r.Root, "inventory")
	}
	r.JSON = strings.EqualFold(os.Getenv(EnvOutput), "json")
	r.Parallel, _ = strconv.Atoi(os.Getenv(EnvParallel))
	r.RetryFailed = os.Getenv(EnvRetry) == "failed"
	r.JUnit = os.Getenv(EnvJUnit)
	r.AcceptNew = os.Getenv(EnvAcceptNew) == "1"
	r.Batch = os.Getenv(EnvBatch)
	r.Force = os.Getenv("BOOTED_FORCE") == "1"
	return r
}

// session is one target's view of one environment.
type session struct {
	r          *Runner
	env        *config.Env
	dir        string // inventory/ENV
	store      *inventory.Store
	prov       provider.Provider
	secret     []byte
	signer     ssh.Signer
	authorized []byte
	ctl        *controller.Controller
}

func (r *Runner) open(ctx context.Context, envName string) (*session, error) {
	env, err := config.Load(filepath.Join(r.Root, "envs"), envName)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(r.Inventory, env.Name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	os.Chmod(r.Inventory, 0o711)
	store, err := inventory.Open(ctx, filepath.Join(r.Inventory, "booted.db"))
	if err != nil {
		return nil, err
	}
	s := &session{r: r, env: env, dir: dir, store: store}
	fail := func(err error) (*session, error) { store.Close(); return nil, err }
	if s.secret, err = secrets.EnvSecret(filepath.Join(dir, "secret")); err != nil {
		return fail(err)
	}
	keyPath := env.SSH.Key
	if keyPath == "" {
		keyPath = filepath.Join(dir, "id_ed25519")
	}
	if s.signer, s.authorized, err = secrets.DeployKey(keyPath, "booted@"+env.Name); err != nil {
		return fail(err)
	}
	if s.prov, err = s.newProvider(ctx); err != nil {
		return fail(err)
	}
	s.ctl = &controller.Controller{
		Env: env.Name, Listen: env.CallbackAddr(), Dir: filepath.Join(dir, "nginx"),
		BootLog: filepath.Join(dir, "booted.log"), KickstartDir: filepath.Join(dir, "kickstart"),
		Template: filepath.Join(r.Root, "nginx", "controller.conf.tmpl"),
	}
	if abs, err := filepath.Abs(s.ctl.Dir); err == nil {
		s.ctl.Dir = abs
		s.ctl.BootLog = filepath.Join(filepath.Dir(abs), "booted.log")
		s.ctl.KickstartDir = filepath.Join(filepath.Dir(abs), "kickstart")
	}
	return s, nil
}

func (s *session) Close() error { return s.store.Close() }

// newProvider is the registry of providers.
func (s *session) newProvider(ctx context.Context) (provider.Provider, error) {
	env, dir := s.env, s.dir
	switch env.Provider.Type {
	case config.ProviderLocal:
		if err := Setup(ctx, s.r.Err); err != nil { // sshd, nginx, ip… when missing
			return nil, err
		}
		return local.New(env, filepath.Join(dir, "hosts"))
	case config.ProviderStatic:
		return static.New(env)
	case config.ProviderVBox:
		p, err := vbox.New(env, filepath.Join(dir, "vbox"), "http://"+env.CallbackAddr()+"/kickstart/", s.renderKickstart)
		if err != nil {
			return nil, err
		}
		if bin := os.Getenv("BOOTED_VBOXMANAGE"); bin != "" {
			p.Bin = bin
		}
		if tftp := os.Getenv("BOOTED_VBOX_TFTP"); tftp != "" {
			p.TFTP = tftp
		}
		return p, nil
	case config.ProviderQemu:
		if err := Setup(ctx, s.r.Err); err != nil {
			return nil, err
		}
		if err := installIfMissing(ctx, s.r, qemuPackages); err != nil {
			return nil, err
		}
		p, err := qemu.New(env, dir)
		if err != nil {
			return nil, err
		}
		p.Log = s.r.Err
		p.ExtraAppend = os.Getenv("BOOTED_QEMU_APPEND")
		return p, nil
	default:
		return nil, fmt.Errorf("%s: provider %q is not available in this version of booted (available: local, static, vbox, qemu)", env.Path, env.Provider.Type)
	}
}

// renderKickstart writes host spec's kickstart where the controller serves it.
func (s *session) renderKickstart(spec provider.Spec) error {
	port := 0
	if w := s.env.Roles[config.RoleWorkers]; w != nil && w.Service != "" {
		if def, err := s.loadService(w.Service); err == nil {
			port = def.Port
		}
	}
	ks, err := kickstart.Render(filepath.Join(s.r.Root, "kickstart"), s.env.Provider.VBox.Kickstart, kickstart.Data{
		Name: spec.Name, Env: s.env.Name, AuthorizedKey: strings.TrimSpace(string(spec.AuthorizedKey)), PhoneHome: string(spec.PhoneHome),
		IdentityURL: "http://" + s.env.CallbackAddr() + "/kickstart/identity/", ServicePort: port,
	})
	if err != nil {
		return err
	}
	dir := filepath.Join(s.dir, "kickstart")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, spec.Name+".ks"), ks, 0o644)
}

// preparer is implemented by providers that must set something up (a
// bridge, say) before the controller's nginx can listen.
type preparer interface {
	Prepare(ctx context.Context) error
}

// knower is implemented by providers whose hosts do not phone home: their
// keys are known beforehand (static machines and their known_hosts).
type knower interface {
	Known(ctx context.Context) ([]static.Known, error)
	KnownHostsFile() string
}

// startController makes sure the controller's nginx is up, for providers
// whose hosts phone home.
func (s *session) startController(ctx context.Context) error {
	if _, ok := s.prov.(knower); ok {
		return nil
	}
	if p, ok := s.prov.(preparer); ok {
		if err := p.Prepare(ctx); err != nil {
			return err
		}
	}
	return s.ctl.Ensure(ctx)
}

// spec is what the provider needs to make host name.
func (s *session) spec(name string) (provider.Spec, error) {
	role, _ := s.env.RoleOf(name)
	ph, err := bootlog.PhoneHome{
		URL: s.env.CallbackURL(), Env: s.env.Name, Name: name,
		Token: bootlog.Token(s.secret, s.env.Name, name), Retry: s.env.Callback.Retry.D(),
	}.Render(filepath.Join(s.r.Root, "kickstart", "phone-home.sh.tmpl"))
	if err != nil {
		return provider.Spec{}, err
	}
	return provider.Spec{Name: name, Role: role, PhoneHome: ph, AuthorizedKey: s.authorized}, nil
}

func (s *session) discoverer() *discovery.Discoverer {
	return &discovery.Discoverer{
		Store: s.store, Env: s.env.Name, Secret: s.secret, Log: s.ctl.BootLog,
		Declared: s.env.RoleOf, Provider: s.env.Provider.Type,
		Logf: func(f string, a ...any) { fmt.Fprintf(s.r.Err, f+"\n", a...) },
	}
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

// names splits "w1,w2" into host names.
func names(arg string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(arg, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no host name given")
	}
	return out, nil
}
