// Package providertest is the conformance suite every provider passes: the
// cases of the Provider interface for all, and the cases of each
// capability (power, delete, clone, console, known keys, netboot) for the
// providers that have it. A provider lacking a capability says so by not
// implementing its interface; the suite logs which cases do not apply.
package providertest

import (
	"context"
	"errors"
	"os"
	"slices"
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
	// key and returns its output. Nil for a subject with no real hosts (a
	// fake VBoxManage): the suite then checks what the provider reports
	// but cannot log in.
	Run func(inst provider.Instance, cmd string) (string, error)
	// Names are host names the subject may make, at least three; default
	// h1, h2, h3 (static subjects list their hosts).
	Names []string
	// BootTimeout bounds waiting for a started host to answer SSH and
	// write its console (default 10s; VMs take longer).
	BootTimeout time.Duration
	// Guarded, for a provider whose hosts sit on booted's bridges, says
	// whether a port passes only its host's own MAC and address
	// (bridge.Guard); nil: the suite does not check.
	Guarded func(port string) bool
}

func (s Subject) names() []string {
	if len(s.Names) >= 3 {
		return s.Names
	}
	return []string{"h1", "h2", "h3"}
}

func (s Subject) boot() time.Duration {
	if s.BootTimeout > 0 {
		return s.BootTimeout
	}
	return 10 * time.Second
}

// Capabilities names the capabilities p has.
func Capabilities(p provider.Provider) []string {
	var out []string
	for name, ok := range map[string]bool{
		"power": is[provider.Power](p), "delete": is[provider.Deleter](p), "clone": is[provider.Cloner](p),
		"console": is[provider.Console](p), "known-keys": is[provider.KnownKeys](p), "netboot": is[provider.Netboot](p),
	} {
		if ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func is[T any](p provider.Provider) bool { _, ok := p.(T); return ok }

// NotApplicable begins the reason of a case skipped because the subject
// lacks what it tests (a capability, a way in): by design, not a missing
// install, so the test target lists it without failing CI.
const NotApplicable = "not applicable:"

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
	// A capability's cases run only where the provider has it; where it
	// does not, the case is skipped as not applicable, naming the
	// capability (the test target lists it; it is no missing install).
	capability := func(t *testing.T, name string, has func(provider.Provider) bool, body func(t *testing.T, s Subject)) {
		t.Run(name, func(t *testing.T) {
			s := newSubject(t)
			if !has(s.Provider) {
				t.Skipf("%s the provider lacks the %s capability", NotApplicable, name)
			}
			body(t, s)
		})
	}

	t.Run("BuildIsIdempotent", func(t *testing.T) {
		s := newSubject(t)
		p, name := s.Provider, s.names()[0]
		t.Logf("capabilities: %s", strings.Join(Capabilities(p), ", "))
		a, err := p.Build(ctx, s.Spec(name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Build(ctx, s.Spec(name))
		if err != nil {
			t.Fatal(err)
		}
		if a.ID == "" || a != b {
			t.Errorf("second build changed the host: %+v then %+v", a, b)
		}
		// A provider that powers hosts lists a built one as off; one that
		// does not (machines that already exist) lists it as it is: up.
		want := provider.Running
		if is[provider.Power](p) {
			want = provider.Off
		}
		if in, ok := find(t, p, name); !ok || in.State != want {
			t.Errorf("built host listed as %+v (found %v), want %s", in, ok, want)
		}
	})

	t.Run("UniqueIdentity", func(t *testing.T) {
		s := newSubject(t)
		seen := map[string]string{}
		for _, n := range s.names()[:3] {
			in, err := s.Provider.Build(ctx, s.Spec(n))
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"id " + in.ID, "address " + in.Addr, "MAC " + in.MAC} {
				if strings.HasSuffix(id, " ") {
					continue // the provider does not know it (an address learnt at phone-home)
				}
				if other, dup := seen[id]; dup {
					t.Errorf("%s and %s share %s", n, other, id)
				}
				seen[id] = n
			}
		}
	})

	t.Run("Start", func(t *testing.T) {
		s := newSubject(t)
		name := s.names()[0]
		in, err := s.Provider.Start(ctx, s.Spec(name))
		if err != nil {
			t.Fatal(err)
		}
		if in.State != provider.Running {
			t.Fatalf("started host is %s", in.State)
		}
		if _, err := s.Provider.Start(ctx, s.Spec(name)); err != nil {
			t.Fatalf("starting a running host: %v", err)
		}
		if got, ok := find(t, s.Provider, name); !ok || got.State != provider.Running {
			t.Errorf("started host listed as %+v", got)
		}
		if l, ok := s.Provider.(provider.Locator); ok && s.Guarded != nil {
			if loc, err := l.Locate(name); err != nil || !s.Guarded(loc.Port) {
				t.Errorf("started host %s: its port %q passes any MAC and address (%v)", name, loc.Port, err)
			}
		}
		if s.Run == nil {
			t.Skipf("%s the subject has no way into its hosts: started, not logged in", NotApplicable)
		}
		if out, err := runEventually(s, in, "hostname"); err != nil || strings.TrimSpace(out) != name {
			t.Fatalf("hostname = %q, %v; want %s", out, err, name)
		}
	})

	capability(t, "Power", func(p provider.Provider) bool { return is[provider.Power](p) }, func(t *testing.T, s Subject) {
		p, name := s.Provider, s.names()[0]
		pw := p.(provider.Power)
		if err := pw.Stop(ctx, name); !errors.Is(err, provider.ErrNoInstance) {
			t.Errorf("stopping a host never built: %v, want ErrNoInstance", err)
		}
		in, err := p.Start(ctx, s.Spec(name))
		if err != nil {
			t.Fatal(err)
		}
		if s.Run != nil {
			if out, err := runEventually(s, in, "hostname"); err != nil || strings.TrimSpace(out) != name {
				t.Fatalf("hostname = %q, %v; want %s", out, err, name)
			}
		}
		if err := pw.Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := pw.Stop(ctx, name); err != nil {
			t.Fatalf("stopping a stopped host: %v", err)
		}
		if got, _ := find(t, p, name); got.State != provider.Off {
			t.Errorf("stopped host listed as %s", got.State)
		}
		if s.Run != nil {
			if _, err := s.Run(in, "true"); err == nil {
				t.Error("a stopped host still answers SSH")
			}
		}
		if _, err := p.Start(ctx, s.Spec(name)); err != nil {
			t.Fatal(err)
		}
		if got, _ := find(t, p, name); got.State != provider.Running {
			t.Errorf("restarted host listed as %s", got.State)
		}
		if s.Run != nil {
			if out, err := runEventually(s, in, "hostname"); err != nil || strings.TrimSpace(out) != name {
				t.Fatalf("after restart: hostname = %q, %v", out, err)
			}
		}
	})

	capability(t, "Delete", func(p provider.Provider) bool { return is[provider.Deleter](p) }, func(t *testing.T, s Subject) {
		p, name := s.Provider, s.names()[0]
		del := p.(provider.Deleter)
		if _, err := p.Start(ctx, s.Spec(name)); err != nil {
			t.Fatal(err)
		}
		// Deleting a running host either works or is refused with
		// ErrRunning, leaving it running.
		if err := del.Delete(ctx, name); err != nil {
			if !errors.Is(err, provider.ErrRunning) {
				t.Fatalf("deleting a running host: %v, want nil or ErrRunning", err)
			}
			if in, ok := find(t, p, name); !ok || in.State != provider.Running {
				t.Fatalf("a refused delete changed the host: %+v", in)
			}
			pw, ok := p.(provider.Power)
			if !ok {
				t.Fatal("a provider refusing to delete a running host must be able to stop it")
			}
			if err := pw.Stop(ctx, name); err != nil {
				t.Fatal(err)
			}
			if err := del.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := find(t, p, name); ok {
			t.Error("deleted host still listed")
		}
		if err := del.Delete(ctx, name); err != nil {
			t.Errorf("deleting twice: %v", err)
		}
		if pw, ok := p.(provider.Power); ok {
			if err := pw.Stop(ctx, name); !errors.Is(err, provider.ErrNoInstance) {
				t.Errorf("stopping a deleted host: %v, want ErrNoInstance", err)
			}
		}
	})

	capability(t, "Clone", func(p provider.Provider) bool { return is[provider.Cloner](p) }, func(t *testing.T, s Subject) {
		p, names := s.Provider, s.names()
		src, err := p.Build(ctx, s.Spec(names[0]))
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.(provider.Cloner).Clone(ctx, names[0], s.Spec(names[1]))
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != names[1] || c.ID == src.ID || (c.MAC != "" && c.MAC == src.MAC) || (c.Addr != "" && c.Addr == src.Addr) {
			t.Errorf("clone %+v shares the identity of %+v", c, src)
		}
		if in, ok := find(t, p, names[1]); !ok || in.ID != c.ID {
			t.Errorf("clone listed as %+v (found %v)", in, ok)
		}
		if _, err := p.(provider.Cloner).Clone(ctx, names[0], s.Spec(names[1])); err == nil {
			t.Error("cloning onto an existing host was allowed")
		}
	})

	capability(t, "Console", func(p provider.Provider) bool { return is[provider.Console](p) }, func(t *testing.T, s Subject) {
		p, names := s.Provider, s.names()
		c := p.(provider.Console)
		if a, b := c.ConsoleLog(names[0]), c.ConsoleLog(names[1]); a == "" || a == b {
			t.Fatalf("console logs %q and %q: want one per host", a, b)
		}
		if s.Run == nil {
			t.Skipf("%s the subject has no real hosts: console paths checked, consoles not read", NotApplicable)
		}
		if _, err := p.Start(ctx, s.Spec(names[0])); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(s.boot())
		for {
			b, err := os.ReadFile(c.ConsoleLog(names[0]))
			if err == nil && len(strings.TrimSpace(string(b))) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no console output from a started host within %v: %v", s.boot(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	capability(t, "KnownKeys", func(p provider.Provider) bool { return is[provider.KnownKeys](p) }, func(t *testing.T, s Subject) {
		p := s.Provider
		for _, name := range s.names() { // hosts to know (static ones exist already)
			if _, err := p.Build(ctx, s.Spec(name)); err != nil {
				t.Fatal(err)
			}
		}
		known, err := p.(provider.KnownKeys).Known(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			t.Fatal("the provider lists no hosts: there is nothing to check its known keys against")
		}
		byName := map[string]provider.Known{}
		for _, k := range known {
			byName[k.Name] = k
		}
		for _, in := range list {
			k, ok := byName[in.Name]
			if !ok || k.Addr != in.Addr || k.Port == 0 {
				t.Errorf("listed host %+v: known as %+v (found %v)", in, k, ok)
				continue
			}
			if k.Key == nil {
				t.Errorf("%s: no key from %s", in.Name, p.(provider.KnownKeys).KnownHostsFile())
				continue
			}
			if s.Run != nil {
				// The key given is the one the host shows: the subject
				// logs in pinned to it.
				if out, err := s.Run(provider.Instance{Name: in.Name, Addr: in.Addr, ID: in.ID}, "hostname"); err != nil || strings.TrimSpace(out) != in.Name {
					t.Errorf("%s: login pinned to the known key: %q, %v", in.Name, out, err)
				}
			}
		}
	})

	capability(t, "Netboot", func(p provider.Provider) bool { return is[provider.Netboot](p) }, func(t *testing.T, s Subject) {
		p, name := s.Provider, s.names()[0]
		if _, err := p.Build(ctx, s.Spec(name)); err != nil {
			t.Fatal(err)
		}
		nb := p.(provider.Netboot)
		for i := 0; i < 2; i++ { // idempotent
			if err := nb.Installed(ctx, name); err != nil {
				t.Fatalf("Installed (%d): %v", i+1, err)
			}
		}
		if in, err := p.Start(ctx, s.Spec(name)); err != nil || in.State != provider.Running {
			t.Fatalf("start after install: %+v, %v", in, err)
		}
	})
}

// runEventually retries Run while sshd comes up.
func runEventually(s Subject, in provider.Instance, cmd string) (string, error) {
	deadline := time.Now().Add(s.boot())
	for {
		out, err := s.Run(in, cmd)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
