// Package providertest is the conformance suite every provider passes.
package providertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"booted/internal/provider"
)

// Subject is one provider for a fresh environment, and a way into its hosts.
type Subject struct {
	Provider provider.Provider
	// Spec returns the spec of host name.
	Spec func(name string) provider.Spec
	// Run runs a shell command on a running host over SSH with the deploy
	// key and returns its output.
	Run func(inst provider.Instance, cmd string) (string, error)
}

// Run runs the suite; newSubject is called once per case.
func Run(t *testing.T, newSubject func(t *testing.T) Subject) {
	ctx := context.Background()
	find := func(t *testing.T, p provider.Provider, name string) (provider.Instance, bool) {
		t.Helper()
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list {
			if in.Name == name {
				return in, true
			}
		}
		return provider.Instance{}, false
	}

	t.Run("BuildIsIdempotent", func(t *testing.T) {
		h := newSubject(t)
		p := h.Provider
		a, err := p.Build(ctx, h.Spec("h1"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Build(ctx, h.Spec("h1"))
		if err != nil {
			t.Fatal(err)
		}
		if a.Addr == "" || a.Addr != b.Addr || a.MAC != b.MAC || a.ID != b.ID {
			t.Errorf("second build changed the host: %+v then %+v", a, b)
		}
		if in, ok := find(t, p, "h1"); !ok || in.State != provider.Off {
			t.Errorf("built host listed as %+v (found %v), want stopped", in, ok)
		}
	})

	t.Run("UniqueIdentity", func(t *testing.T) {
		h := newSubject(t)
		p := h.Provider
		addrs, macs := map[string]bool{}, map[string]bool{}
		for _, n := range []string{"h1", "h2", "h3"} {
			in, err := p.Build(ctx, h.Spec(n))
			if err != nil {
				t.Fatal(err)
			}
			if addrs[in.Addr] || macs[in.MAC] {
				t.Errorf("%s shares address %s or MAC %s", n, in.Addr, in.MAC)
			}
			addrs[in.Addr], macs[in.MAC] = true, true
		}
	})

	t.Run("StartStopStart", func(t *testing.T) {
		h := newSubject(t)
		p := h.Provider
		in, err := p.Start(ctx, h.Spec("h1"))
		if err != nil {
			t.Fatal(err)
		}
		if in.State != provider.Running {
			t.Fatalf("started host is %s", in.State)
		}
		if _, err := p.Start(ctx, h.Spec("h1")); err != nil {
			t.Fatalf("starting a running host: %v", err)
		}
		out, err := runEventually(h, in, "hostname")
		if err != nil || strings.TrimSpace(out) != "h1" {
			t.Fatalf("hostname = %q, %v; want h1", out, err)
		}
		if err := p.Stop(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if err := p.Stop(ctx, "h1"); err != nil {
			t.Fatalf("stopping a stopped host: %v", err)
		}
		if got, _ := find(t, p, "h1"); got.State != provider.Off {
			t.Errorf("stopped host listed as %s", got.State)
		}
		if _, err := h.Run(in, "true"); err == nil {
			t.Error("a stopped host still answers SSH")
		}
		if _, err := p.Start(ctx, h.Spec("h1")); err != nil {
			t.Fatal(err)
		}
		if out, err := runEventually(h, in, "hostname"); err != nil || strings.TrimSpace(out) != "h1" {
			t.Fatalf("after restart: hostname = %q, %v", out, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		h := newSubject(t)
		p := h.Provider
		if _, err := p.Start(ctx, h.Spec("h1")); err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		if _, ok := find(t, p, "h1"); ok {
			t.Error("deleted host still listed")
		}
		if err := p.Delete(ctx, "h1"); err != nil {
			t.Errorf("deleting twice: %v", err)
		}
		if err := p.Stop(ctx, "h1"); !errors.Is(err, provider.ErrNoInstance) {
			t.Errorf("stopping a deleted host: %v, want ErrNoInstance", err)
		}
	})
}

// runEventually retries Run for a few seconds while sshd comes up.
func runEventually(h Subject, in provider.Instance, cmd string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := h.Run(in, cmd)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
