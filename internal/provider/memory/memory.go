// Package memory is an in-memory provider for fast tests of what drives
// providers (the targets' orchestration): hosts are records in a map, each
// with an address, a MAC and an SSH host key made up when it is built, and
// a power state. Their keys are known beforehand (as a static machine's
// are), so no controller or phone-home is needed. It passes the
// conformance suite, without hosts to log in to.
package memory

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"golang.org/x/crypto/ssh"

	"booted/internal/provider"
)

// Interface guards: what in-memory hosts can do.
var (
	_ provider.Provider  = (*Provider)(nil)
	_ provider.Power     = (*Provider)(nil)
	_ provider.Deleter   = (*Provider)(nil)
	_ provider.Cloner    = (*Provider)(nil)
	_ provider.KnownKeys = (*Provider)(nil)
)

// Host is one in-memory host.
type Host struct {
	provider.Instance
	Key ssh.PublicKey
}

// Provider keeps hosts in memory. The zero value is not usable: use New.
type Provider struct {
	mu     sync.Mutex
	hosts  map[string]*Host
	next   netip.Addr
	calls  []string
	failOn map[string]error
}

// New returns a provider whose hosts get addresses from first upwards.
func New(first netip.Addr) *Provider {
	return &Provider{hosts: map[string]*Host{}, next: first, failOn: map[string]error{}}
}

// FailOn makes every call of op ("build", "start", "stop", "delete") on
// host name fail with err (nil clears it).
func (p *Provider) FailOn(op, name string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.failOn, op+" "+name)
	} else {
		p.failOn[op+" "+name] = err
	}
}

// Calls returns the calls made so far ("start w1", "stop lb1", ...).
func (p *Provider) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// Get returns host name's record.
func (p *Provider) Get(name string) (Host, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.hosts[name]
	if !ok {
		return Host{}, false
	}
	return *h, true
}

func (p *Provider) call(op, name string) error {
	p.calls = append(p.calls, op+" "+name)
	if err := p.failOn[op+" "+name]; err != nil {
		return fmt.Errorf("host %s: %w", name, err)
	}
	return nil
}

func (p *Provider) build(name string) (*Host, error) {
	if h, ok := p.hosts[name]; ok {
		return h, nil
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	a := p.next
	p.next = p.next.Next()
	b := a.As4()
	h := &Host{Instance: provider.Instance{Name: name, ID: "mem-" + name, Addr: a.String(),
		MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), State: provider.Off}, Key: key}
	p.hosts[name] = h
	return h, nil
}

// Build records the host, off.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.call("build", s.Name); err != nil {
		return provider.Instance{}, err
	}
	h, err := p.build(s.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	return h.Instance, nil
}

// Start powers the host on, building it first if needed.
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.call("start", s.Name); err != nil {
		return provider.Instance{}, err
	}
	h, err := p.build(s.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	h.State = provider.Running
	return h.Instance, nil
}

// Stop powers the host off.
func (p *Provider) Stop(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.call("stop", name); err != nil {
		return err
	}
	h, ok := p.hosts[name]
	if !ok {
		return fmt.Errorf("host %s: %w", name, provider.ErrNoInstance)
	}
	h.State = provider.Off
	return nil
}

// Delete forgets the host; a running one is refused, as a VM is.
func (p *Provider) Delete(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.call("delete", name); err != nil {
		return err
	}
	h, ok := p.hosts[name]
	if !ok {
		return nil
	}
	if h.State == provider.Running {
		return fmt.Errorf("host %s: %w", name, provider.ErrRunning)
	}
	delete(p.hosts, name)
	return nil
}

// Clone records host s.Name as a copy of src, with its own identity.
func (p *Provider) Clone(ctx context.Context, src string, s provider.Spec) (provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.hosts[src]; !ok {
		return provider.Instance{}, fmt.Errorf("host %s: %w", src, provider.ErrNoInstance)
	}
	if _, ok := p.hosts[s.Name]; ok {
		return provider.Instance{}, fmt.Errorf("host %s exists already", s.Name)
	}
	h, err := p.build(s.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	return h.Instance, nil
}

// List returns the hosts by name.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]provider.Instance, 0, len(p.hosts))
	for _, h := range p.hosts {
		out = append(out, h.Instance)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Known returns every host with its key.
func (p *Provider) Known(ctx context.Context) ([]provider.Known, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Known
	for _, h := range p.hosts {
		out = append(out, provider.Known{Name: h.Name, Addr: h.Addr, Port: 22, Key: h.Key})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// KnownHostsFile names where the keys are: nowhere but memory.
func (p *Provider) KnownHostsFile() string { return "(memory)" }
