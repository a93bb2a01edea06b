// Package static provides machines that already exist (Fabric's usual
// case): hosts listed by name and address in the env file, their host keys
// taken from a known_hosts file. booted does not power them; a host that is
// not in the known_hosts file is refused unless its key is pinned on first
// use (BOOTED_ACCEPT_NEW=1).
package static

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"booted/internal/config"
	"booted/internal/provider"
)

// Provider lists the static hosts of one environment.
type Provider struct {
	env        *config.Env
	set        *Settings
	knownHosts string
}

// Interface guards: booted neither powers nor deletes static machines; it
// takes their keys from a known_hosts file.
var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.KnownKeys = (*Provider)(nil)
)

// Open returns the static provider of env.
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	return New(env)
}

// New returns the static provider of env.
func New(env *config.Env) (*Provider, error) {
	set, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.static is missing", env.Path)
	}
	kh := set.KnownHosts
	if kh == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		kh = filepath.Join(home, ".ssh", "known_hosts")
	} else if !filepath.IsAbs(kh) {
		kh = filepath.Join(filepath.Dir(filepath.Dir(env.Path)), kh)
	}
	return &Provider{env: env, set: set, knownHosts: kh}, nil
}

// KnownHostsFile is the file host keys are read from.
func (p *Provider) KnownHostsFile() string { return p.knownHosts }

func (p *Provider) host(name string) (Host, error) {
	for _, h := range p.set.Hosts {
		if h.Name == name {
			if h.Port == 0 {
				h.Port = p.env.SSH.Port
			}
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("host %s is not listed in provider.static.hosts of %s: %w", name, p.env.Path, provider.ErrNoInstance)
}

func instance(h Host) provider.Instance {
	return provider.Instance{Name: h.Name, ID: net.JoinHostPort(h.Address, strconv.Itoa(h.Port)), Addr: h.Address, State: provider.Running}
}

// Build checks that the host is listed: static machines exist already.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	h, err := p.host(s.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	return instance(h), nil
}

// Start is Build: booted does not power static machines.
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.Build(ctx, s)
}

// List returns every listed host.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	var out []provider.Instance
	for _, h := range p.set.Hosts {
		if h.Port == 0 {
			h.Port = p.env.SSH.Port
		}
		out = append(out, instance(h))
	}
	return out, nil
}

// keyPreference orders the key types pinned when a host has several.
var keyPreference = []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA}

// Known returns every listed host with its key from the known_hosts file.
func (p *Provider) Known(ctx context.Context) ([]provider.Known, error) {
	var cb ssh.HostKeyCallback
	if _, err := os.Stat(p.knownHosts); err == nil {
		if cb, err = knownhosts.New(p.knownHosts); err != nil {
			return nil, fmt.Errorf("%s: %w", p.knownHosts, err)
		}
	}
	insts, _ := p.List(ctx)
	out := make([]provider.Known, 0, len(insts))
	for _, in := range insts {
		h, _ := p.host(in.Name)
		k := provider.Known{Name: h.Name, Addr: h.Address, Port: h.Port}
		if cb != nil {
			k.Key = lookup(cb, h.Address, h.Port)
		}
		out = append(out, k)
	}
	return out, nil
}

// lookup asks the known_hosts callback about a host with a key it cannot
// know; the KeyError it answers with lists the keys it does know.
func lookup(cb ssh.HostKeyCallback, addr string, port int) ssh.PublicKey {
	hostport := net.JoinHostPort(addr, strconv.Itoa(port))
	tcp := &net.TCPAddr{IP: net.ParseIP(addr), Port: port}
	err := cb(hostport, tcp, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	for _, t := range keyPreference {
		for _, w := range ke.Want {
			if w.Key.Type() == t {
				return w.Key
			}
		}
	}
	return ke.Want[0].Key
}

// probeKey is a key no known_hosts file holds.
type probeKey struct{}

func (probeKey) Type() string                            { return "booted-probe" }
func (probeKey) Marshal() []byte                         { return []byte("booted-probe") }
func (probeKey) Verify(_ []byte, _ *ssh.Signature) error { return errors.New("probe") }
