package lifecycle_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/provider"
)

// Start of a host that phones home: built (provisioning, stopped), a
// token issued for this boot, booting, powered on; again while it boots:
// nothing more. Of a host whose key is known: powered on and pinned.
func TestStart(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	var specs, pinned []string
	h.Spec = func(name string) (provider.Spec, error) {
		specs = append(specs, name)
		return provider.Spec{Name: name, Role: "workers"}, nil
	}
	h.Pin = func(_ context.Context, _ provider.KnownKeys, names ...string) error {
		pinned = append(pinned, names...)
		return nil
	}
	if err := h.Provision(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if st := state(t, h, "w1"); st != inventory.Booting {
		t.Errorf("w1 after start: %s, want booting", st)
	}
	events, _ := h.Store.Events(ctx, "e", "w1", 20)
	var trail []string
	for _, e := range events {
		if e.Kind == "state" {
			trail = append(trail, string(e.To))
		}
	}
	if got := strings.Join(trail, ","); got != "provisioning,stopped,booting" {
		t.Errorf("w1's states: %s, want provisioning,stopped,booting", got)
	}
	calls := strings.Join(mem.Calls(), ",")
	if calls != "build w1,start w1" {
		t.Errorf("provider calls: %s, want one build and one start", calls)
	}
	if err := h.Start(ctx, "w1"); err != nil { // running and booting: left alone
		t.Fatal(err)
	}
	if calls := strings.Join(mem.Calls(), ","); calls != "build w1,start w1,build w1" {
		t.Errorf("provider calls after a second start: %s, want no second power-on", calls)
	}
	if err := h.Start(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pinned, ",") != "e1" || strings.Contains(strings.Join(specs, ","), "e1") {
		t.Errorf("e1 (key known): pinned %v, specs made %v; want pinned and no spec (it does not phone home)", pinned, specs)
	}
}

// A host that runs but failed (its liveness check, say) and is started
// again is powered off first, then booted with a new token: started as it
// was, it did not boot, never phoned home with the token, and its boot
// timed out a minute later (found by bench:fanout on 1,000 hosts, where
// one missed its ping).
func TestStart_RebootsARunningHostThatFailed(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	h.Spec = func(name string) (provider.Spec, error) { return provider.Spec{Name: name, Role: "workers"}, nil }
	if err := h.Provision(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Store.Advance(ctx, "e", "w1", inventory.Failed, "liveness: no reply to ping within 2s"); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if calls := strings.Join(mem.Calls(), ","); calls != "build w1,start w1,build w1,stop w1,start w1" {
		t.Errorf("provider calls: %s; want it powered off and on again", calls)
	}
	if st := state(t, h, "w1"); st != inventory.Booting {
		t.Errorf("w1: %s, want booting", st)
	}
}

// A build the provider refuses leaves a new host failed, with why.
func TestBuild_FailedSaysWhy(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	mem.FailOn("build", "w2", errors.New("no disk"))
	if _, err := h.Build(ctx, provider.Spec{Name: "w2", Role: "workers"}); err == nil {
		t.Fatal("a refused build succeeded")
	}
	host, err := h.Store.Host(ctx, "e", "w2")
	if err != nil || host.State != inventory.Failed || !strings.Contains(host.Reason, "no disk") {
		t.Errorf("w2: %+v %v", host, err)
	}
}

// An instance is built once per launch: built, its record handed to
// ready (with the address its metadata needs), booted. (Before, its
// metadata step built it and its start built it again.)
func TestLaunch_BuildsOnce(t *testing.T) {
	ctx := context.Background()
	h, mem, _, _ := hosts(t)
	h.Spec = func(name string) (provider.Spec, error) { return provider.Spec{Name: name, Role: "instances"}, nil }
	var readies []string
	err := h.Launch(ctx, "i-0abc", func(_ context.Context, host inventory.Host) error {
		readies = append(readies, host.Name+"@"+host.Addr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls := strings.Join(mem.Calls(), ","); calls != "build i-0abc,start i-0abc" {
		t.Errorf("provider calls: %s, want one build and one start", calls)
	}
	if strings.Join(readies, ",") != "i-0abc@192.0.2.10" || state(t, h, "i-0abc") != inventory.Booting {
		t.Errorf("ready saw %v; state %s", readies, state(t, h, "i-0abc"))
	}
	// A ready that fails stops the launch before the host boots.
	err = h.Launch(ctx, "i-0def", func(context.Context, inventory.Host) error { return errors.New("metadata: disk full") })
	if err == nil || strings.Contains(strings.Join(mem.Calls(), ","), "start i-0def") {
		t.Errorf("a failed ready: %v, calls %v", err, mem.Calls())
	}
}

// Awaiting phone-homes pins every known-keys provider's hosts, and reads
// the boot log only when some provider's hosts phone home.
func TestAwaitPhoneHome_PinsThenDiscovers(t *testing.T) {
	ctx := context.Background()
	h, _, _, _ := hosts(t)
	var pinned int
	h.Pin = func(context.Context, provider.KnownKeys, ...string) error { pinned++; return nil }
	made := 0
	newD := func() *discovery.Discoverer {
		made++
		return &discovery.Discoverer{Store: h.Store, Env: "e", Log: filepath.Join(t.TempDir(), "booted.log"), Declared: h.Env.RoleOf}
	}
	if err := h.AwaitPhoneHome(ctx, newD); err != nil {
		t.Fatal(err)
	}
	if pinned != 1 || made != 1 {
		t.Errorf("static and phone-home providers: pinned %d times, discoverers made %d; want 1 and 1", pinned, made)
	}
	h.Provs.ByType = map[string]provider.Provider{"qemu": h.Provs.ByType["static"]} // known keys alone
	pinned, made = 0, 0
	if err := h.AwaitPhoneHome(ctx, newD); err != nil || pinned != 1 || made != 0 {
		t.Errorf("known keys alone: %v, pinned %d, discoverers made %d; want 1 and 0", err, pinned, made)
	}
}
