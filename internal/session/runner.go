package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

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
	"booted/internal/hostops"
	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/lifecycle"
	"booted/internal/metadata"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/registry"
	"booted/internal/service"
)

// Session is one target's view of one environment.
type Session struct {
	Options
	Env   *config.Env
	Dir   string // inventory/ENV, absolute
	Store *inventory.Store
	// provs are the environment's providers and its roles', by type: where
	// a host's provider is resolved.
	Provs      *lifecycle.Providers
	IO         HostIO
	Signer     ssh.Signer
	Authorized []byte
	KeyPath    string // the deploy key's private half
	Ctl        *controller.Controller
	// lazy guards q and o, made at their first use: a session opened
	// once (api:serve's) serves requests at once.
	lazy sync.Mutex
	q    *hostquery.Q
	o    *hostops.Runner
	// conducting is the site this session is a conductor of ("": the
	// controller).
	Conducting string
	// nats is the session's connection to the env file's NATS cluster
	// as the controller (controllerNATS), made at its first use.
	nats struct {
		sync.Mutex
		nc *nats.Conn
		js jetstream.JetStream
	}
}

// Close closes what s opened: the connections to the hosts, NATS, the
// inventory.
func (s *Session) Close() error {
	if c, ok := s.IO.(io.Closer); ok && s.IO != s.HostIO {
		c.Close() // the connections kept to the hosts
	}
	s.nats.Lock()
	if s.nats.nc != nil {
		s.nats.nc.Close()
	}
	s.nats.Unlock()
	return s.Store.Close()
}

// openProviders opens the environment's provider through the registry,
// installing what it (and the controller) needs.
func (s *Session) openProviders(ctx context.Context) (*lifecycle.Providers, error) {
	var ports []int
	if w := s.Env.Roles[config.RoleWorkers]; w != nil && w.Service != "" {
		if def, err := s.LoadService(w.Service); err == nil {
			ports = append(ports, def.Port)
		}
	}
	o := provider.Options{
		Dir: s.Dir, Root: s.Root, Log: s.Err,
		Install: func(ctx context.Context, need map[string]string) error {
			return pkgs.Ensure(ctx, s.Err, pkgs.Merge(controller.Needs, metadata.Needs, need))
		},
		Served: s.Ctl.KickstartDir, ServedURL: "http://" + s.Env.CallbackAddr() + "/kickstart/", Ports: ports,
		FailedURL:  "http://" + s.Env.CallbackAddr() + bootlog.FailedPath,
		BaseURL:    "http://" + s.Env.CallbackAddr(),
		VBoxManage: s.VBoxManage, VBoxTFTP: s.VBoxTFTP, QemuAppend: s.QemuAppend,
	}
	open := s.OpenProvider
	if open == nil {
		open = registry.Open
	}
	prov, err := open(ctx, s.Env, o)
	if err != nil {
		return nil, err
	}
	provs, err := registry.OpenRoles(ctx, s.Env, o)
	if err != nil {
		return nil, err
	}
	provs[s.Env.Provider.Type] = prov
	return &lifecycle.Providers{Env: s.Env, ByType: provs, Site: s.sitedProv}, nil
}

// Life is s's hosts' lifecycle (lifecycle.Hosts).
func (s *Session) Life() *lifecycle.Hosts {
	return &lifecycle.Hosts{Env: s.Env, Store: s.Store, Provs: s.Provs, Drain: s.Deploys().UpdateLB, Log: s.Err, Spec: s.Spec,
		Pin: func(ctx context.Context, k provider.KnownKeys, names ...string) error {
			return s.Pinner(k).Record(ctx, names...)
		}}
}

// ProvOf returns the provider of host name: its role's, or the
// environment's; for the host of a site with a network of its own, that
// provider through the site's conductors (sited.go).
func (s *Session) ProvOf(name string) provider.Provider { return s.Provs.Of(name) }

// Prepare runs every provider's preparation (bridges, served files).
func (s *Session) Prepare(ctx context.Context) error {
	for _, p := range s.Provs.All() {
		if pp, ok := p.(provider.Preparer); ok {
			if err := pp.Prepare(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reload reads the env file again and opens its provider (the monitor's
// SIGHUP): nothing changes when either fails.
func (s *Session) Reload(ctx context.Context) error {
	env, err := LoadEnv(s.Root, s.Env.Name)
	if err != nil {
		return err
	}
	old := s.Env
	s.Env = env
	provs, err := s.openProviders(ctx)
	if err != nil {
		s.Env = old
		return err
	}
	s.Provs = provs
	s.lazy.Lock()
	s.q, s.o = nil, nil // made again over the new env file
	s.lazy.Unlock()
	return nil
}

// StartController makes sure the controller's nginx is up, for providers
// whose hosts phone home.
func (s *Session) StartController(ctx context.Context) error {
	if !s.Provs.AnyPhonesHome() {
		return nil
	}
	if err := s.Prepare(ctx); err != nil {
		return err
	}
	return s.Ctl.Ensure(ctx)
}

// Spec is what the provider needs to make host name (no token: see enroll).
func (s *Session) Spec(name string) (provider.Spec, error) {
	role, _ := s.Env.RoleOf(name)
	spec := provider.Spec{Name: name, Role: role, AuthorizedKey: s.Authorized}
	instance := false
	if h, err := s.Store.Host(context.Background(), s.Env.Name, name); err == nil && h.Role == ec2host.Role {
		spec.Role, spec.Instance, instance = h.Role, true, true
		if t, ok := ec2backend.Type(s.Env, h.Attrs[ec2host.AttrType]); ok {
			spec.Size = provider.Size{CPUs: t.VCPUs, MemoryMB: t.MemoryMiB, DiskGB: t.DiskGB}
		}
		if k := h.Attrs[ec2host.AttrAuthorized]; k != "" { // launched with a key pair: its key next to the deploy key
			spec.AuthorizedKey = []byte(strings.TrimSpace(string(s.Authorized)) + "\n" + k + "\n")
		}
	}
	if _, known := s.Provs.KnownKeys(name); known {
		return spec, nil // it does not phone home
	}
	ph, err := bootlog.PhoneHome{
		URL: s.CallbackURL(name), Env: s.Env.Name, Name: name, Retry: s.Env.Callback.Retry.D(), UserData: instance,
	}.Render(filepath.Join(s.Root, "kickstart", "phone-home.sh.tmpl"))
	spec.PhoneHome = ph
	return spec, err
}

// Discoverer records the hosts that phone home from the boot log (and the
// callbacks the sites' conductors relay).
func (s *Session) Discoverer() *discovery.Discoverer {
	d := &discovery.Discoverer{
		Store: s.Store, Env: s.Env.Name, Log: s.Ctl.BootLog,
		Declared: s.Env.RoleOf, Provider: s.Env.Provider.Type,
		Logf: func(f string, a ...any) { fmt.Fprintf(s.Err, f+"\n", a...) },
	}
	if s.SitesCallBack() { // and the callbacks the sites' conductors took
		d.Sited, d.SiteOf = s.SitedCallbacks, s.SiteOfHost
	}
	return d
}

// LoadService reads services/SVC/service.yaml.
func (s *Session) LoadService(svc string) (*service.Def, error) {
	return service.Load(s.Root, svc)
}

// Lock takes the environment's lock for what, waiting up to BOOTED_LOCK_WAIT.
func (s *Session) Lock(ctx context.Context, what string) (*envlock.Lock, error) {
	return s.lockWaiting(ctx, what, s.LockWait)
}

// lockWaiting takes the environment's lock for what, waiting up to wait:
// the flock of a file in its directory here and, when other machines
// share the inventory (PostgreSQL), the inventory's lock of it too.
func (s *Session) lockWaiting(ctx context.Context, what string, wait time.Duration) (*envlock.Lock, error) {
	start := time.Now()
	l, err := envlock.Acquire(ctx, filepath.Join(s.Dir, "lock"), what, wait, func(holder string) {
		fmt.Fprintf(s.Err, "%s: waiting (up to %v) for the operation holding %s: %s\n", what, wait, s.Env.Name, holder)
	})
	if err != nil || !s.Store.Shared() {
		return l, err
	}
	wctx, cancel := context.WithTimeout(ctx, max(wait-time.Since(start), time.Second))
	defer cancel()
	shared, err := s.Store.LockEnv(wctx, s.Env.Name, fmt.Sprintf("%s, %s since %s", what, holder(), time.Now().UTC().Format(time.RFC3339)))
	if err != nil {
		l.Release()
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			h, _, _ := s.Store.Holder(ctx, s.Env.Name, "operations")
			return nil, fmt.Errorf("%w: %s (on a controller sharing the inventory; waited %v; BOOTED_LOCK_WAIT waits longer)", envlock.ErrBusy, h.Holder, wait)
		}
		return nil, err
	}
	l.Also(shared.Release)
	return l, nil
}
