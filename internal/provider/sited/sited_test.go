package sited_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/conductor"
	"booted/internal/provider"
	"booted/internal/provider/local"
	"booted/internal/provider/memory"
	"booted/internal/provider/providertest"
	"booted/internal/provider/sited"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/testutil"
)

// conductors is a site's conductors as the controller reaches them: each
// job and its result cross as JSON (as over NATS), and the conductor does
// it with sited.Do and its own provider. It records the kinds it did.
type conductors struct {
	own  provider.Provider
	mu   sync.Mutex
	jobs []string
}

func (c *conductors) Call(ctx context.Context, j conductor.Job) (conductor.Result, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return conductor.Result{}, err
	}
	var got conductor.Job
	if err := json.Unmarshal(b, &got); err != nil {
		return conductor.Result{}, err
	}
	c.mu.Lock()
	c.jobs = append(c.jobs, got.Kind+" "+got.Host.Name)
	c.mu.Unlock()
	r := sited.Do(ctx, func(string) provider.Provider { return c.own }, got)
	b, err = json.Marshal(r)
	if err != nil {
		return conductor.Result{}, err
	}
	var out conductor.Result
	return out, json.Unmarshal(b, &out)
}

// The site's provider passes the conformance suite every provider passes,
// over the provider its conductors use: memory (no root) here.
func TestConformance_Memory(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		c := &conductors{own: memory.New(netip.MustParseAddr("192.0.2.10"))}
		return providertest.Subject{
			Provider: sited.Wrap(c.own, "e", "s", c, time.Minute),
			Spec:     func(name string) provider.Spec { return provider.Spec{Name: name} },
		}
	})
}

// And over local hosts, the provider sites make hosts with: real hosts,
// logged in to over SSH.
func TestConformance_Local(t *testing.T) {
	testutil.RequireLocalHosts(t)
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		proj := testutil.NewProject(t, testutil.DefaultEnv)
		own, err := local.New(proj.Config(t), filepath.Join(proj.Inventory, proj.Env, "hosts"))
		if err != nil {
			t.Fatal(err)
		}
		signer, pub, err := secrets.DeployKey(filepath.Join(proj.Inventory, proj.Env, "id_ed25519"), "test")
		if err != nil {
			t.Fatal(err)
		}
		c := &conductors{own: own}
		return providertest.Subject{
			Provider: sited.Wrap(own, proj.Env, "s", c, time.Minute),
			Spec: func(name string) provider.Spec {
				return provider.Spec{Name: name, AuthorizedKey: pub, PhoneHome: []byte("#!/bin/sh\necho phone-home of $(hostname)\n")}
			},
			Run: func(in provider.Instance, cmd string) (string, error) {
				b, err := os.ReadFile(filepath.Join(proj.Inventory, proj.Env, "hosts", in.Name, "fs/etc-ssh/ssh_host_ed25519_key.pub"))
				if err != nil {
					return "", err
				}
				key, _, _, _, err := ssh.ParseAuthorizedKey(b)
				if err != nil {
					return "", err
				}
				return testutil.SSHRun(remote.Target{Name: in.Name, Addr: in.Addr, HostKey: key}, signer, cmd, 3*time.Second)
			},
		}
	})
}

// What acts on a host is a job of kind host.* for the site's conductors;
// what reads the provider's records is not. The provider's errors come
// back as themselves (callers ask errors.Is).
func TestWrap_ActsAreJobs(t *testing.T) {
	ctx := context.Background()
	c := &conductors{own: memory.New(netip.MustParseAddr("192.0.2.10"))}
	p := sited.Wrap(c.own, "e", "s", c, time.Minute)
	if site, ok := sited.Site(p); !ok || site != "s" {
		t.Fatalf("Site: %q %v", site, ok)
	}
	if _, ok := sited.Site(c.own); ok {
		t.Error("Site of a provider Wrap did not return")
	}
	if _, err := p.Build(ctx, provider.Spec{Name: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Start(ctx, provider.Spec{Name: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.(provider.Deleter).Delete(ctx, "h1"); !errors.Is(err, provider.ErrRunning) || !strings.HasPrefix(err.Error(), "host h1: ") {
		t.Errorf("delete of a running host through the site: %v, want ErrRunning naming h1", err)
	}
	if err := p.(provider.Power).Stop(ctx, "h9"); !errors.Is(err, provider.ErrNoInstance) {
		t.Errorf("stop of a host never built: %v, want ErrNoInstance", err)
	}
	want := []string{"host.build h1", "host.boot h1", "host.delete h1", "host.poweroff h9"}
	if strings.Join(c.jobs, ",") != strings.Join(want, ",") {
		t.Errorf("jobs: %q, want %q (List is read here, not a job)", c.jobs, want)
	}
	if _, ok := p.(provider.Switch); ok {
		t.Error("a provider without a BMC gained a power switch")
	}
}

// The conductor refuses a job whose spec is not its host's, or a kind it
// does not know, naming the host.
func TestDo_RefusesForeignJobs(t *testing.T) {
	own := memory.New(netip.MustParseAddr("192.0.2.10"))
	of := func(string) provider.Provider { return own }
	args, _ := json.Marshal(sited.Args{Spec: provider.Spec{Name: "h2"}})
	r := sited.Do(context.Background(), of, conductor.Job{Kind: "host.build", Host: conductor.HostRef{Name: "h1"}, Args: args})
	if r.Status != "failed" || !strings.Contains(r.Error, "host h1: a host.build job whose spec is not the host's") {
		t.Errorf("a spec of another host: %+v", r)
	}
	args, _ = json.Marshal(sited.Args{Spec: provider.Spec{Name: "h1"}})
	r = sited.Do(context.Background(), of, conductor.Job{Kind: "host.format", Host: conductor.HostRef{Name: "h1"}, Args: args})
	if r.Status != "failed" || !strings.Contains(r.Error, `host h1: job kind "host.format" is not one this conductor does`) {
		t.Errorf("an unknown kind: %+v", r)
	}
	r = sited.Do(context.Background(), of, conductor.Job{Kind: "host.power-on", Host: conductor.HostRef{Name: "h1"}, Args: args})
	if r.Status != "failed" || !strings.Contains(r.Error, "host h1: its provider has no BMC") {
		t.Errorf("power-on without a BMC: %+v", r)
	}
}

// bmcHosts is memory's hosts with a BMC, netboot and stages, as the
// bare-metal provider has them (power through the BMC is memory's Start
// and Stop).
type bmcHosts struct {
	*memory.Provider
	installed []string
}

func (b *bmcHosts) ConsoleLog(name string) string { return "console/" + name }
func (b *bmcHosts) Locate(name string) (provider.Location, error) {
	return provider.Location{}, nil
}
func (b *bmcHosts) PowerOn(ctx context.Context, name string) error {
	_, err := b.Start(ctx, provider.Spec{Name: name})
	return err
}
func (b *bmcHosts) PowerOff(ctx context.Context, name string) error { return b.Stop(ctx, name) }
func (b *bmcHosts) PowerCycle(ctx context.Context, name string) error {
	if err := b.Stop(ctx, name); err != nil {
		return err
	}
	return b.PowerOn(ctx, name)
}
func (b *bmcHosts) PowerStatus(ctx context.Context, name string) (string, error) {
	list, err := b.List(ctx)
	for _, in := range list {
		if in.Name == name && in.State == provider.Running {
			return "on", err
		}
	}
	return "off", err
}
func (b *bmcHosts) Installed(ctx context.Context, name string) error {
	b.installed = append(b.installed, name)
	return nil
}
func (b *bmcHosts) Stage(ctx context.Context, name string, since time.Time) (string, time.Time, string, time.Time) {
	return "lease", since, "installer", since.Add(time.Minute)
}
func (b *bmcHosts) Retries() int { return 2 }

// A bare-metal node of a site: its power switch and netboot are jobs for
// the site's conductors; its stages are read here.
func TestWrap_BareMetalNode(t *testing.T) {
	ctx := context.Background()
	own := &bmcHosts{Provider: memory.New(netip.MustParseAddr("192.0.2.10"))}
	c := &conductors{own: own}
	p := sited.Wrap(own, "e", "s", c, time.Minute)
	sw, ok := p.(provider.Switch)
	if !ok {
		t.Fatalf("a node with a BMC lost its power switch through the site: %v", providertest.Capabilities(p))
	}
	if _, err := p.Build(ctx, provider.Spec{Name: "n2"}); err != nil {
		t.Fatal(err)
	}
	if st, err := sw.PowerStatus(ctx, "n2"); err != nil || st != "off" {
		t.Errorf("power status of a built node: %q %v", st, err)
	}
	if err := sw.PowerOn(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if st, err := sw.PowerStatus(ctx, "n2"); err != nil || st != "on" {
		t.Errorf("power status after power-on: %q %v", st, err)
	}
	if err := p.(provider.Netboot).Installed(ctx, "n2"); err != nil || len(own.installed) != 1 {
		t.Errorf("installed: %v %v", err, own.installed)
	}
	if reached, _, waiting, _ := p.(provider.Stages).Stage(ctx, "n2", time.Now()); reached != "lease" || waiting != "installer" {
		t.Errorf("stages: %q %q", reached, waiting)
	}
	if p.(provider.Console).ConsoleLog("n2") != "console/n2" || p.(provider.Stages).Retries() != 2 {
		t.Error("records are not the provider's own")
	}
	want := "host.build n2,host.power-status n2,host.power-on n2,host.power-status n2,host.installed n2"
	if got := strings.Join(c.jobs, ","); got != want {
		t.Errorf("jobs: %s, want %s", got, want)
	}
}
