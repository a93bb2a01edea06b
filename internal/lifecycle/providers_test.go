package lifecycle_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"booted/internal/config"
	"booted/internal/lifecycle"
	"booted/internal/provider"
	"booted/internal/provider/memory"
)

// phoning is a provider whose hosts phone home: memory's, without the
// keys it knows.
type phoning struct{ m *memory.Provider }

func (p phoning) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.m.Build(ctx, s)
}
func (p phoning) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	return p.m.Start(ctx, s)
}
func (p phoning) List(ctx context.Context) ([]provider.Instance, error) { return p.m.List(ctx) }
func (p phoning) Stop(ctx context.Context, name string) error           { return p.m.Stop(ctx, name) }
func (p phoning) Delete(ctx context.Context, name string) error         { return p.m.Delete(ctx, name) }

// An environment of phone-home hosts (workers w1, w2) with a role of
// machines whose keys are known (edge: e1).
func providers(t *testing.T) (*lifecycle.Providers, phoning, *memory.Provider) {
	t.Helper()
	env := &config.Env{Name: "e", Provider: config.Provider{Type: "local"}, Roles: map[string]*config.Role{
		"workers": {Hosts: []string{"w1", "w2"}, Max: 2},
		"edge":    {Hosts: []string{"e1"}, Max: 1, Provider: "static"},
	}}
	local := phoning{memory.New(netip.MustParseAddr("192.0.2.10"))}
	static := memory.New(netip.MustParseAddr("198.51.100.10"))
	return &lifecycle.Providers{Env: env, ByType: map[string]provider.Provider{"local": local, "static": static}}, local, static
}

func TestProviders_OfAndPhoneHome(t *testing.T) {
	p, local, static := providers(t)
	for host, want := range map[string]provider.Provider{"w1": local, "e1": static, "i-0abc": local} {
		if got := p.Of(host); got != want {
			t.Errorf("Of(%s) = %T, want %T", host, got, want)
		}
	}
	if _, known := p.KnownKeys("e1"); !known {
		t.Error("e1's provider knows its key: it must not phone home")
	}
	if _, known := p.KnownKeys("w1"); known {
		t.Error("w1 phones home")
	}
	if !p.AnyPhonesHome() {
		t.Error("a static environment with a local role phones home (its local hosts do)")
	}
	if all := p.All(); len(all) != 2 || all[0] != provider.Provider(local) || all[1] != provider.Provider(static) {
		t.Errorf("All: %v, want the environment's first", all)
	}
	if p.TypeOf(static) != "static" || p.TypeOf(local) != "local" {
		t.Errorf("TypeOf: %s %s", p.TypeOf(static), p.TypeOf(local))
	}
	only := &lifecycle.Providers{Env: &config.Env{Name: "s", Provider: config.Provider{Type: "static"}}, ByType: map[string]provider.Provider{"static": static}}
	if only.AnyPhonesHome() {
		t.Error("a static environment alone phones home")
	}
}

// A site's host is acted on through what Site makes of its own provider;
// Own is still the provider itself.
func TestProviders_Site(t *testing.T) {
	p, local, _ := providers(t)
	wrapped := memory.New(netip.MustParseAddr("203.0.113.10"))
	p.Site = func(name string, own provider.Provider) provider.Provider {
		if name == "w2" && own == provider.Provider(local) {
			return wrapped
		}
		return own
	}
	if p.Of("w2") != provider.Provider(wrapped) || p.Own("w2") != provider.Provider(local) || p.Of("w1") != provider.Provider(local) {
		t.Errorf("w2: Of %T Own %T; w1: Of %T", p.Of("w2"), p.Own("w2"), p.Of("w1"))
	}
}

// List takes each host from the provider of its role.
func TestProviders_List(t *testing.T) {
	ctx := context.Background()
	p, local, static := providers(t)
	for _, n := range []string{"w1", "e1"} { // e1 made by local too: not its provider
		local.Build(ctx, provider.Spec{Name: n})
	}
	static.Build(ctx, provider.Spec{Name: "e1"})
	list, err := p.List(ctx)
	var names []string
	for _, in := range list {
		names = append(names, in.Name+"@"+in.Addr[:3])
	}
	if err != nil || !slices.Equal(names, []string{"e1@198", "w1@192"}) {
		t.Errorf("List: %v %v", names, err)
	}
}
