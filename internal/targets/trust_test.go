package targets

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/inventory"
	"booted/internal/provider/local"
	"booted/internal/testutil"
)

// tokenOf returns the enrollment token host name sent, from the boot log.
func (f *fixture) tokenOf(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.proj.Inventory, f.proj.Env, "booted.log"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct{ Args string }
		json.Unmarshal(sc.Bytes(), &l)
		if q, err := url.ParseQuery(l.Args); err == nil && q.Get("name") == name && q.Get("token") != "" {
			return q.Get("token")
		}
	}
	t.Fatalf("no token of %s in the boot log", name)
	return ""
}

// callFrom sends a callback from inside local host from.
func (f *fixture) callFrom(t *testing.T, from, path, query string) {
	t.Helper()
	ns := "booted-" + f.proj.Env + "-" + from
	if out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-fsS", "http://"+f.proj.Gateway+":8077"+path+"?"+query).CombinedOutput(); err != nil {
		t.Fatalf("curl from %s: %v: %s", from, err, out)
	}
}

func (f *fixture) hostKeyFile(name string) string {
	return filepath.Join(f.proj.Inventory, f.proj.Env, "hosts", name, "fs", "etc-ssh", "ssh_host_ed25519_key")
}

// The reported attack: w1's token, taken from the boot log, sent from
// inside w2 with w2's key. It is refused and raised as an alert; w1 keeps
// its key and address, commands for w1 still run on w1, and the load
// balancer still routes to w1. Then a rebuild (a new provisioning) pins
// w1's new key, and the old key is refused.
func TestTargets_StolenTokenAndRebuild(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1")
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartAll(ctx, env))
	before := f.hosts(t)
	w2key, err := os.ReadFile(f.hostKeyFile("w2") + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _, _, _ := ssh.ParseAuthorizedKey(w2key)
	f.callFrom(t, "w2", "/booted/", bootlog.Query("w1", f.tokenOf(t, "w1"), k2))
	f.out.Reset()
	f.must(t, f.r.HostsLogged(ctx, env))
	if !strings.Contains(f.out.String(), "ALERT host-key-mismatch w1") {
		t.Errorf("hosts:logged does not raise the alert:\n%s", f.out)
	}
	after := f.hosts(t)
	if w1 := after["w1"]; w1.State != "serving" || w1.HostKey != before["w1"].HostKey || w1.IP != before["w1"].IP {
		t.Errorf("w1 changed by a stolen token: %+v, was %+v", w1, before["w1"])
	}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/workers", "hostname"))
	if !strings.Contains(f.out.String(), "w1 | w1") || strings.Contains(f.out.String(), "w1 | w2") {
		t.Errorf("hosts:run:\n%s", f.out)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.EnvStatus(ctx, env))
	f.r.JSON = false
	if !strings.Contains(f.out.String(), before["w1"].IP+":8080") {
		t.Errorf("the load balancer no longer routes to w1:\n%s", f.out)
	}
	f.out.Reset()
	f.must(t, f.r.EnvStatus(ctx, env))
	if !strings.Contains(f.out.String(), "ALERT host-key-mismatch w1") {
		t.Errorf("env:status does not show the alert:\n%s", f.out)
	}

	// A rebuild: stopped, its key gone, started again (a new provisioning).
	oldKey, err := os.ReadFile(f.hostKeyFile("w1"))
	if err != nil {
		t.Fatal(err)
	}
	f.must(t, f.r.ImageStop(ctx, env, "w1"))
	os.Remove(f.hostKeyFile("w1"))
	os.Remove(f.hostKeyFile("w1") + ".pub")
	f.must(t, f.r.ImageStart(ctx, env, "w1"))
	f.must(t, f.r.HostsLogged(ctx, env))
	f.must(t, f.r.HostsFilter(ctx, env))
	rebuilt := f.hosts(t)["w1"]
	if rebuilt.State != "ready" || rebuilt.HostKey == before["w1"].HostKey {
		t.Fatalf("w1 after its rebuild: %+v", rebuilt)
	}
	old, err := ssh.ParsePrivateKey(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	q, err := bootlog.SignedQuery(env, "w1", "", old, time.Now().Unix(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	f.callFrom(t, "w1", "/booted/", q)
	f.must(t, f.r.HostsLogged(ctx, env))
	if h := f.hosts(t)["w1"]; h.HostKey != rebuilt.HostKey || h.State != "ready" {
		t.Errorf("the old key came back: %+v", h)
	}
}

// A host whose first-boot step fails reports it: it is failed at once (not
// after the boot timeout), with the tail of the step's log in its reason.
func TestTargets_FailureReport(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv) // boot timeout 20s
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.ImageBuild(ctx, env, "w1"))
	step := filepath.Join(f.proj.Inventory, env, "hosts", "w1", "fs", "etc-booted", "firstboot.sh")
	if err := os.WriteFile(step, []byte("#!/bin/sh\necho formatting /data\necho 'mkfs: no space left on device' >&2\nexit 3\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.must(t, f.r.ImageStart(ctx, env, "w1"))
	f.must(t, f.r.HostsLogged(ctx, env))
	took := time.Since(start)
	h := f.hosts(t)["w1"]
	if h.State != "failed" || !strings.Contains(h.Reason, "reported failed: first-boot step (/etc/booted/firstboot.sh) exited 3 | formatting /data | mkfs: no space left on device") {
		t.Fatalf("w1: %+v", h)
	}
	t.Logf("failed %v after image:start", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the report took %v to fail the host: it waited for the boot timeout", took)
	}
}

// Everything in the inventory that holds a key, a token or a pin is
// root's alone after a whole flow (env:startAll, a deploy, nginx:restart),
// or, in a local host's own files, its root's alone (the id of this
// machine its user namespace maps its root to).
func TestTargets_InventoryIsPrivate(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1")
	ctx := context.Background()
	f.must(t, f.r.EnvStartAll(ctx, f.proj.Env))
	f.must(t, f.r.NginxRestart(ctx, f.proj.Env))
	secret := func(rel string) bool {
		base := filepath.Base(rel)
		return strings.HasPrefix(base, "booted.log") || strings.HasPrefix(base, "booted.db") || base == "id_ed25519" ||
			base == "known_hosts" || base == "enroll-token" || strings.HasPrefix(base, "ssh_host_") && !strings.HasSuffix(base, ".pub") ||
			strings.HasPrefix(rel, "kickstart") || base == "authorized_keys" || base == "phone-home.sh"
	}
	checked := 0
	filepath.Walk(f.proj.Inventory, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(f.proj.Inventory, p)
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case p == f.proj.Inventory || rel == f.proj.Env:
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", p, fi.Mode().Perm())
			}
		case fi.Mode().IsRegular() && secret(rel):
			checked++
			owner := 0 // root's, or a local host's own file its root's (an id of its own here)
			if parts := strings.Split(rel, string(filepath.Separator)); len(parts) > 4 && parts[1] == "hosts" && parts[3] == "fs" {
				owner = local.HostUID(f.proj.Env, parts[2])
			}
			if fi.Mode().Perm()&0o077 != 0 || int(st.Uid) != owner {
				t.Errorf("%s: mode %v uid %d: a secret readable by others", rel, fi.Mode().Perm(), st.Uid)
			}
		}
		return nil
	})
	if checked < 8 {
		t.Errorf("only %d secret files found: the walk missed the inventory", checked)
	}
}

// Two deploys of different versions started at the same instant: the
// second waits for the first (the environment's lock), both succeed, and
// every worker ends on one version, with current and run/version agreeing
// and one supervisor each.
func TestTargets_ConcurrentDeploysDoNotMix(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1", "v2", "v3")
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartAll(ctx, env))
	errs := make(chan error, 2)
	for _, v := range []string{"v2", "v3"} {
		r := *f.r // each its own runner, as two processes would be
		r.Out = &testutil.SyncBuffer{}
		go func() { errs <- r.ServiceDeploy(ctx, env, "hello", v) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a concurrent deploy failed: %v", err)
		}
	}
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/workers", `cd /opt/booted/hello; cur=$(basename "$(readlink current)"); run=$(cat run/version);
me=$(readlink /proc/self/ns/net); n=0
for p in /proc/[0-9]*; do
	[ "$(readlink $p/ns/net 2>/dev/null)" = "$me" ] && tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/bin/sh /opt/booted/bin/booted-supervise hello ' && n=$((n + 1))
done
echo "current=$cur run=$run supervisors=$n"`))
	out := f.out.String()
	var versions []string
	for _, w := range []string{"w1", "w2"} {
		i := strings.Index(out, w+" | current=")
		if i < 0 {
			t.Fatalf("no report from %s:\n%s", w, out)
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		var cur, run string
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(line, w+" | "), "current=%s run=%s supervisors=%d", &cur, &run, &n); err != nil {
			t.Fatalf("%s: %q: %v", w, line, err)
		}
		if cur != run || n != 1 {
			t.Errorf("%s: current %s, run/version %s, %d supervisors; want them equal and 1", w, cur, run, n)
		}
		versions = append(versions, cur)
	}
	if versions[0] != versions[1] {
		t.Errorf("workers on different versions: %v", versions)
	}
}

// hosts:ssh logs in with the deploy key, the host key checked against
// booted's pin (a command on its standard input here, as a user would
// type it); an unknown host is refused naming what to run.
func TestTargets_HostsSSH(t *testing.T) {
	testutil.RequireCommands(t, "ssh")
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.ImageStart(ctx, env, "w1"))
	f.must(t, f.r.HostsLogged(ctx, env))
	f.r.In = strings.NewReader("hostname; echo $((6*7))\n")
	f.out.Reset()
	f.must(t, f.r.HostsSSH(ctx, env, "w1"))
	if out := f.out.String(); !strings.Contains(out, "w1\n42\n") {
		t.Errorf("hosts:ssh w1 printed %q", out)
	}
	if err := f.r.HostsSSH(ctx, env, "w9"); err == nil || !strings.Contains(err.Error(), "has no host w9 (hosts:list") {
		t.Errorf("hosts:ssh of an unknown host: %v", err)
	}
	// A pin that is not w1's key: ssh refuses to log in.
	other := strings.TrimSpace(pubOf(t, newSSHKey(t)))
	f.must(t, f.r.withEnv(ctx, env, func(s *session) error {
		return s.Store.Update(ctx, func(tx *inventory.Tx) error {
			return tx.Modify(env, "w1", func(h *inventory.Host) error { h.HostKey = other; return nil })
		})
	}))
	f.r.In = strings.NewReader("echo logged-in\n")
	f.out.Reset()
	if err := f.r.HostsSSH(ctx, env, "w1"); err == nil || strings.Contains(f.out.String(), "logged-in") {
		t.Errorf("hosts:ssh with a pin that is not w1's key logged in: %v %s", err, f.out)
	}
}
