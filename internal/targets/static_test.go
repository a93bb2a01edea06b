package targets

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/testutil"
)

// The static provider, against machines that already exist (two local
// hosts of another environment, reached by address).
func TestTargets_StaticHosts(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	f.must(t, f.r.ImageStart(ctx, f.proj.Env, "w1,w2"))
	f.must(t, f.r.HostsReset(ctx, f.proj.Env))
	local := f.hosts(t)
	dir := filepath.Join(f.proj.Inventory, f.proj.Env)

	// known_hosts knows only the first machine.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(local["w1"].IP+" "+local["w1"].HostKey+"\n"), 0o600)
	name := f.proj.Env + "s"
	os.WriteFile(filepath.Join(f.proj.Root, "envs", name+".yaml"), []byte(fmt.Sprintf(`version: 1
provider:
  type: static
  static:
    known_hosts: %s
    hosts:
      - {name: s1, address: %s}
      - {name: s2, address: %s, port: 22}
ssh:
  key: %s
timeouts: {ssh: 5s, ping: 1s}
roles:
  workers:
    hosts: [s1, s2]
    min: 1
    max: 2
`, kh, local["w1"].IP, local["w2"].IP, filepath.Join(dir, "id_ed25519"))), 0o644)

	// It works at once, as Fabric does: hosts:run on a host listed with its
	// key in known_hosts connects without a hosts:reset first; s2, whose
	// key is unknown, is refused saying so.
	f.out.Reset()
	err := f.r.HostsRun(ctx, name, "hostname")
	if out := f.out.String(); !strings.Contains(out, "s1 | w1") || err == nil || !strings.Contains(err.Error(), "s2") {
		t.Errorf("hosts:run on a static env never reset: %v\n%s", err, out)
	}
	if s2 := f.hostsOf(t, name)["s2"]; !strings.Contains(s2.Reason, "host key unknown") {
		t.Errorf("s2 is not refused with what to do: %+v", s2)
	}
	// s2's key is unknown: the reset ends with a recap and fails naming
	// it (the landed one exited 0 with no recap).
	f.out.Reset()
	err = f.r.HostsReset(ctx, name)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 hosts failed: s2") {
		t.Errorf("hosts:reset with s2 refused: %v", err)
	}
	if out := f.out.String(); !strings.Contains(out, "recap hosts:reset "+name+": 1 ok, 1 failed") || !strings.Contains(out, "host key unknown") {
		t.Errorf("hosts:reset printed no recap naming s2's reason:\n%s", out)
	}
	hosts := f.hostsOf(t, name)
	if hosts["s1"].State != "ready" {
		t.Errorf("s1: %+v", hosts["s1"])
	}
	if s2 := hosts["s2"]; s2.State != "failed" || !strings.Contains(s2.Reason, "host key unknown") || !strings.Contains(s2.Reason, "BOOTED_ACCEPT_NEW=1") {
		t.Errorf("an unknown host was not refused with what to do: %+v", s2)
	}
	f.r.AcceptNew = true
	f.must(t, f.r.HostsReset(ctx, name))
	f.r.AcceptNew = false
	if s2 := f.hostsOf(t, name)["s2"]; s2.State != "ready" || s2.HostKey != local["w2"].HostKey {
		t.Errorf("BOOTED_ACCEPT_NEW=1 did not pin s2's key: %+v", s2)
	}
	// The pin holds without the variable.
	f.must(t, f.r.HostsReset(ctx, name))
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, name, "hostname"))
	if out := f.out.String(); !strings.Contains(out, "s1 | w1") || !strings.Contains(out, "s2 | w2") {
		t.Errorf("hosts:run output:\n%s", out)
	}
	// booted does not power static machines, and says so.
	f.must(t, f.r.ImageStop(ctx, name, "s1"))
	if h := f.hostsOf(t, name)["s1"]; h.State != "ready" {
		t.Errorf("image:stop changed a static host to %s", h.State)
	}
	// known_hosts now says s1 has another key: it is refused.
	os.WriteFile(kh, []byte(local["w1"].IP+" "+local["w2"].HostKey+"\n"), 0o600)
	f.must(t, f.r.HostsLogged(ctx, name))
	if err := f.r.HostsFilter(ctx, name); err != nil {
		t.Fatal(err)
	}
	if s1 := f.hostsOf(t, name)["s1"]; s1.State != "failed" || !strings.Contains(s1.Reason, "HOST KEY CHANGED") {
		t.Errorf("s1 with a changed key: %+v", s1)
	}
}

// A static environment with a role of local hosts: whether a host phones
// home is its own provider's (one rule). The static host is pinned from
// known_hosts (s1, whose key is unknown, is refused saying so); the local
// host phones home and is discovered by hosts:logged, which only pinned
// before (e1 stayed booting).
func TestTargets_StaticEnvWithLocalRole(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	if err := os.WriteFile(filepath.Join(f.proj.Root, "envs", env+".yaml"), []byte(fmt.Sprintf(`version: 1
provider:
  type: static
  local: {subnet: %s}
  static:
    known_hosts: %s
    hosts:
      - {name: s1, address: 127.0.0.1, port: 1}
callback: {retry: 30s}
timeouts: {boot: 30s, ssh: 5s, ping: 1s}
roles:
  workers: {hosts: [s1], min: 1, max: 1}
  edge: {hosts: [e1], min: 1, max: 1, provider: local}
`, f.proj.Subnet, kh)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.r.EnvDestroy(context.Background(), env) })
	f.must(t, f.r.ImageStart(ctx, env, "e1"))
	f.must(t, f.r.HostsLogged(ctx, env))
	hosts := f.hostsOf(t, env)
	if e1 := hosts["e1"]; e1.State != "booted" && e1.State != "ready" {
		t.Errorf("e1 (local, phones home) after hosts:logged: %+v, want booted", e1)
	}
	if s1 := hosts["s1"]; s1.State != "failed" || !strings.Contains(s1.Reason, "host key unknown") {
		t.Errorf("s1 (static, key unknown) after hosts:logged: %+v, want failed saying its key is unknown", s1)
	}
	f.must(t, f.r.HostsFilter(ctx, env))
	if e1 := f.hostsOf(t, env)["e1"]; e1.State != "ready" {
		t.Errorf("e1 after hosts:filter: %+v, want ready", e1)
	}
}
