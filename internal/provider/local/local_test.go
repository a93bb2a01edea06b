package local_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/provider"
	"booted/internal/provider/local"
	"booted/internal/provider/providertest"
	"booted/internal/remote"
	"booted/internal/secrets"
	"booted/internal/testutil"
)

type fixture struct {
	proj   *testutil.Project
	prov   *local.Provider
	signer ssh.Signer
	pub    []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	testutil.RequireLocalHosts(t)
	return fixtureOn(t, testutil.NewProject(t, testutil.DefaultEnv))
}

// fixtureOn is the fixture of a project made already.
func fixtureOn(t testing.TB, proj *testutil.Project) *fixture {
	t.Helper()
	prov, err := local.New(proj.Config(t), filepath.Join(proj.Inventory, proj.Env, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	signer, pub, err := secrets.DeployKey(filepath.Join(proj.Inventory, proj.Env, "id_ed25519"), "test")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{proj, prov, signer, pub}
}

func (f *fixture) spec(name string) provider.Spec {
	return provider.Spec{Name: name, AuthorizedKey: f.pub, PhoneHome: []byte("#!/bin/sh\necho phone-home of $(hostname)\n")}
}

// run logs in to a local host with the key its sshd generated at boot.
func (f *fixture) run(name, addr, cmd string) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.proj.Inventory, f.proj.Env, "hosts", name, "fs/etc-ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		return "", err
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return "", err
	}
	return testutil.SSHRun(remote.Target{Name: name, Addr: addr, HostKey: key}, f.signer, cmd, 3*time.Second)
}

func TestConformance(t *testing.T) {
	testutil.RequireLocalHosts(t)
	providertest.Run(t, func(t *testing.T) providertest.Subject {
		f := newFixture(t)
		return providertest.Subject{
			Provider: f.prov,
			Spec:     f.spec,
			Run:      func(in provider.Instance, cmd string) (string, error) { return f.run(in.Name, in.Addr, cmd) },
			Guarded:  func(port string) bool { return testutil.PortGuarded("", f.proj.Env, port) },
		}
	})
}

// Ensure hosts do not see each other's files nor the machine's /root, run
// their phone-home script at boot, and that stopping kills every process.
func TestLocal_IsolationAndStop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	marker := []byte("#!/bin/sh\necho phoned > /var/log/marker\n")
	var insts []provider.Instance
	for _, n := range []string{"a1", "a2"} {
		s := f.spec(n)
		s.PhoneHome = marker
		in, err := f.prov.Start(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, in)
	}
	waitSSH(t, f, insts[0])
	waitSSH(t, f, insts[1])
	if _, err := f.run("a1", insts[0].Addr, "echo one > /opt/file; echo one > /root/file"); err != nil {
		t.Fatal(err)
	}
	out, err := f.run("a2", insts[1].Addr, "ls /opt /root; hostname; ip -4 -o addr show eth0; ip route")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "file") {
		t.Errorf("a2 sees a1's files:\n%s", out)
	}
	if !strings.Contains(out, "a2\n") || !strings.Contains(out, insts[1].Addr+"/24") || !strings.Contains(out, "default via "+f.proj.Gateway) {
		t.Errorf("a2's hostname, address or route is wrong:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(f.proj.Inventory, f.proj.Env, "hosts/a1/fs/opt/file")); err != nil || string(b) != "one\n" {
		t.Errorf("a1's /opt is not its own directory: %q %v", b, err)
	}
	// the machine's own /root must not be the host's
	if out, _ := f.run("a1", insts[0].Addr, "ls -A /root"); strings.Contains(out, ".bashrc") || strings.Contains(out, ".profile") {
		t.Errorf("the machine's /root shows in the host: %s", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(f.proj.Inventory, f.proj.Env, "hosts/a1/fs/var-log/marker"))
		if string(b) == "phoned\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the phone-home script did not run at boot")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each host has its own PID namespace, its init (tini, PID 1) reaping
	// orphans: a process on a1 is not seen from a2 (the landed hosts shared
	// the machine's: pgrep on one saw every host's), and an orphan that
	// exits leaves no zombie.
	if _, err := f.run("a1", insts[0].Addr, "setsid sleep 301 </dev/null >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	if out, err := f.run("a1", insts[0].Addr, "ps -o comm= -p 1; pgrep -c -f 'slee[p] 301'; sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -eo stat= | grep -c '^Z' || true"); err != nil || out != "tini\n1\n0\n" {
		t.Errorf("a1: init, its sleep 301, zombies after an orphan exited: %q %v", out, err)
	}
	if out, _ := f.run("a2", insts[1].Addr, "pgrep -c -f 'slee[p] 301' || true"); !strings.HasPrefix(out, "0\n") {
		t.Errorf("a2 sees a1's processes: %q", out)
	}
	// A process started over SSH, detached, must die with the host.
	pid := ""
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == "sleep\x00301\x00" {
			pid = e.Name()
		}
	}
	if pid == "" {
		t.Fatal("a1's sleep 301 is not running")
	}
	if err := f.prov.Stop(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && len(b) > 0 {
		t.Errorf("process %s (%q) survived the host's stop", pid, b)
	}
	if err := exec.Command("ping", "-c1", "-W1", insts[0].Addr).Run(); err == nil {
		t.Error("a stopped host answers ping")
	}
	if err := f.prov.Delete(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + insts[0].ID); err == nil {
		t.Error("namespace left after delete")
	}
	if _, err := os.Stat(filepath.Join(f.proj.Inventory, f.proj.Env, "hosts/a1")); err == nil {
		t.Error("files left after delete")
	}
}

func waitSSH(t *testing.T, f *fixture, in provider.Instance) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.run(in.Name, in.Addr, "true")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: no SSH: %v", in.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLocal_RefusesOverlappingSubnet(t *testing.T) {
	testutil.RequireLocalHosts(t)
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	// A second environment on the first one's subnet must be refused.
	other := *proj.Config(t)
	other.Name = proj.Env + "x"
	prov, err := local.New(&other, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = prov.Prepare(context.Background())
	if err == nil {
		prov.Teardown(context.Background())
		t.Fatal("an overlapping subnet was accepted")
	}
	if !strings.Contains(err.Error(), "overlaps") || !strings.Contains(err.Error(), "provider.local.subnet") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

// A site's subnet on the environment's is refused, naming both fields;
// one on another environment's bridge is refused when it is made.
func TestLocal_RefusesOverlappingSiteSubnet(t *testing.T) {
	testutil.RequireLocalHosts(t)
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	env := *proj.Config(t)
	env.Sites = map[string]*config.Site{"a": {Roles: []string{"workers"}, Subnet: proj.Subnet}}
	if _, err := local.New(&env, t.TempDir()); err == nil || !strings.Contains(err.Error(), "sites.a.subnet "+proj.Subnet+" overlaps provider.local.subnet") {
		t.Errorf("a site on the environment's subnet: %v", err)
	}
	other := *proj.Config(t)
	other.Name = proj.Env + "x"
	other.Provider.Settings = &local.Settings{Subnet: "10.254.254.0/24"}
	other.Sites = map[string]*config.Site{"a": {Roles: []string{"workers"}, Subnet: proj.Subnet}}
	prov, err := local.New(&other, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = prov.Prepare(context.Background())
	prov.Teardown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sites.a.subnet") || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("a site on another environment's subnet: %v", err)
	}
}

// Twenty hosts started at once all come up: each listed running at an
// address of its own, each logged in to (its sshd, with the key it made
// at boot) and telling its own name. How fast is BenchmarkLocal_Start20's
// to measure, not this test's.
func TestLocal_TwentyHosts(t *testing.T) {
	f := newFixture(t)
	start := time.Now()
	startHosts(t, f, 20)
	t.Logf("20 hosts built and booted in %v", time.Since(start).Round(time.Millisecond))
	list, err := f.prov.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, in := range list {
		if in.State != provider.Running {
			t.Errorf("%s is %s", in.Name, in.State)
		}
		addrs[in.Name] = in.Addr
	}
	seen := map[string]string{}
	for i := 0; i < 20; i++ {
		name := "n" + strconv.Itoa(i)
		a, ok := addrs[name]
		if !ok || a == "" {
			t.Errorf("%s is not listed with an address: %v", name, addrs)
			continue
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share the address %s", name, other, a)
		}
		seen[a] = name
	}
	var wg sync.WaitGroup
	for name, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out string
			var err error
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if out, err = f.run(name, addr, "hostname"); err == nil {
					break
				}
			}
			if err != nil || strings.TrimSpace(out) != name {
				t.Errorf("%s at %s: hostname = %q, %v", name, addr, out, err)
			}
		}()
	}
	wg.Wait()
}

// A project in root's home (/root/booted: a new user running as root
// clones it there) has its hosts' files under /root, and each host binds
// a /root of its own: the hosts boot all the same. They did not ("mount:
// /opt: special device …/hosts/w1/fs/opt does not exist", found by
// testFresh): /root was bound first and hid the files of the rest.
func TestLocal_ProjectUnderRoot(t *testing.T) {
	testutil.RequireLocalHosts(t)
	dir, err := os.MkdirTemp("/root", "booted-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the project's own cleanup (the hosts)
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	proj.Inventory = dir
	prov, err := local.New(proj.Config(t), filepath.Join(dir, proj.Env, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	signer, pub, err := secrets.DeployKey(filepath.Join(dir, proj.Env, "id_ed25519"), "test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{proj, prov, signer, pub}
	t.Cleanup(func() { prov.Teardown(context.Background()) })
	startHosts(t, f, 2)
	list, err := prov.List(context.Background())
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	for _, in := range list {
		var out string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if out, err = f.run(in.Name, in.Addr, "hostname; ls /opt /etc/booted >/dev/null && echo private dirs there"); err == nil {
				break
			}
		}
		if err != nil || out != in.Name+"\nprivate dirs there\n" {
			t.Errorf("%s, its files under %s: %q, %v; console:\n%s", in.Name, dir, out, err, console(prov, in.Name))
		}
	}
}

func console(p *local.Provider, name string) string {
	b, _ := os.ReadFile(p.ConsoleLog(name))
	return string(b)
}

func startHosts(t testing.TB, f *fixture, n int) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.prov.Start(context.Background(), f.spec("n"+strconv.Itoa(i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkLocal_Start20 measures building and booting 20 hosts at once.
func BenchmarkLocal_Start20(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFixture(b)
		b.StartTimer()
		startHosts(b, f, 20)
		b.StopTimer()
		f.prov.Teardown(context.Background())
		f.prov.Prepare(context.Background())
	}
}

// A site's network is a namespace of its own (its router) owning the
// site's bridge: its hosts' links are there, not on this machine. Hosts
// reach each other across sites through this machine; a site's router
// (where its conductors run) reaches its own site's hosts, not another
// site's. Teardown removes the namespaces, the uplinks and the routing.
func TestLocal_SiteNetworks(t *testing.T) {
	testutil.RequireLocalHosts(t)
	ctx := context.Background()
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	env := *proj.Config(t)
	p := strings.Split(proj.Subnet, ".")
	x, _ := strconv.Atoi(p[1])
	subnet := func(plus int) string { return p[0] + "." + strconv.Itoa(x+plus) + "." + p[2] + ".0/24" }
	env.Sites = map[string]*config.Site{"a": {Hosts: []string{"a*"}, Subnet: subnet(16)}, "b": {Hosts: []string{"b*"}, Subnet: subnet(32)}}
	env.SSH.Port = 22
	prov, err := local.New(&env, filepath.Join(proj.Inventory, proj.Env, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.Teardown(context.Background()) })
	_, pub, err := secrets.DeployKey(filepath.Join(proj.Inventory, proj.Env, "id_ed25519"), "test")
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{}
	for _, n := range []string{"a1", "b1", "e1"} {
		in, err := prov.Start(ctx, provider.Spec{Name: n, AuthorizedKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		addr[n] = in.Addr
	}
	siteA := bridge.SiteNetns(env.Name, "a")
	loc, _ := prov.Locate("a1")
	if err := exec.Command("ip", "-n", siteA, "link", "show", "dev", loc.Port).Run(); err != nil {
		t.Errorf("a1's link %s is not in site a's namespace %s: %v", loc.Port, siteA, err)
	}
	if exec.Command("ip", "link", "show", "dev", loc.Port).Run() == nil || exec.Command("ip", "link", "show", "dev", loc.Bridge).Run() == nil {
		t.Errorf("a1's link %s or its bridge %s is on this machine, not in its site's namespace", loc.Port, loc.Bridge)
	}
	reaches := func(ns, host string) bool {
		return exec.Command("ip", "netns", "exec", ns, "timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/"+addr[host]+"/22").Run() == nil
	}
	hostNS := func(n string) string { return "booted-" + env.Name + "-" + n }
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{hostNS("a1"), "b1", true}, {hostNS("b1"), "a1", true}, {hostNS("e1"), "a1", true}, {hostNS("a1"), "e1", true},
		{siteA, "a1", true}, {siteA, "b1", false}, {bridge.SiteNetns(env.Name, "b"), "a1", false},
	} {
		if got := reaches(c.from, c.to); got != c.want {
			t.Errorf("from %s to %s (%s): reached %v, want %v", c.from, c.to, addr[c.to], got, c.want)
		}
	}
	// What runs on a site's router (its conductors, their nginx) ends
	// with its network.
	router := exec.Command("ip", "netns", "exec", siteA, "sleep", "60")
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- router.Wait() }()
	if err := prov.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		router.Process.Kill()
		t.Errorf("a process of site a's router (pid %d) outlived its network", router.Process.Pid)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	links, _ := exec.Command("ip", "-br", "link").Output()
	tables, _ := exec.Command("nft", "list", "tables").Output()
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/booted/booted-" + env.Name + "-*")
	if strings.Contains(string(out), env.Name) || strings.Contains(string(tables), env.Name) || strings.Contains(string(links), "bt-"+env.Name) || len(cgroups) > 0 {
		t.Errorf("after teardown, left: namespaces\n%s\ntables\n%s\nlinks\n%s\ncgroups %v", out, tables, links, cgroups)
	}
}

// A host's root makes /root/.ssh a link to a directory of the controller's
// (and /etc/booted/enroll-token a link to a file of it); when booted gives
// the host its files again (a new provisioning: key, token), nothing is
// written there (before, authorized_keys landed in the controller's
// directory, through the link).
func TestLocal_NoWritesThroughTheHostsLinks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.spec("l1")
	in, err := f.prov.Start(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	waitSSH(t, f, in)
	target := t.TempDir() // a directory of the controller's
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("the controller's"), 0o600)
	// what root on the host can do to its own files (here from outside,
	// through the same directory the host's /root is)
	fs := filepath.Join(f.proj.Inventory, f.proj.Env, "hosts", "l1", "fs")
	os.RemoveAll(filepath.Join(fs, "root/.ssh"))
	if err := os.Symlink(target, filepath.Join(fs, "root/.ssh")); err != nil {
		t.Fatal(err)
	}
	os.Symlink(secret, filepath.Join(fs, "etc-booted/enroll-token.tmp"))
	s.Token = strings.Repeat("ab", 32)
	f.prov.Stop(ctx, "l1")
	if _, err := f.prov.Start(ctx, s); err == nil {
		t.Log("started again") // refusing is as good: what matters is where it wrote
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("booted wrote %s into the controller's directory through the host's link", ents[0].Name())
	}
	if b, _ := os.ReadFile(secret); string(b) != "the controller's" {
		t.Errorf("booted wrote the token into the controller's file through the host's link: %q", b)
	}
}

// A host's memory, processes and CPU are bounded by a cgroup of its own,
// which its processes (sshd's session included) are in: a tenant's fork
// bomb ends at the bound, not at this machine's; the cgroup goes with
// the host.
func TestLocal_Bounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	in, err := f.prov.Start(ctx, f.spec("b1"))
	if err != nil {
		t.Fatal(err)
	}
	waitSSH(t, f, in)
	netns := "booted-" + f.proj.Env + "-b1"
	pids := "/sys/fs/cgroup/pids/booted/" + netns // cgroup v1, as on the machine booted is developed on
	files := map[string]string{
		pids + "/pids.max": fmt.Sprint(local.PidsLimit),
		"/sys/fs/cgroup/memory/booted/" + netns + "/memory.limit_in_bytes": fmt.Sprint(local.MemoryLimit),
		"/sys/fs/cgroup/cpu/booted/" + netns + "/cpu.cfs_quota_us":         fmt.Sprint(100000 * local.CPUs),
	}
	inCgroup := "pids:/booted/" + netns
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		pids = "/sys/fs/cgroup/booted/" + netns
		files = map[string]string{pids + "/pids.max": fmt.Sprint(local.PidsLimit), pids + "/memory.max": fmt.Sprint(local.MemoryLimit),
			pids + "/cpu.max": fmt.Sprint(100000*local.CPUs) + " 100000"}
		inCgroup = "0::/booted/" + netns
	}
	for file, want := range files {
		if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %q %v, want %s", file, b, err, want)
		}
	}
	if out, err := f.run("b1", in.Addr, "cat /proc/self/cgroup"); err != nil || !strings.Contains(out, inCgroup) {
		t.Errorf("a login's cgroups: %q %v", out, err)
	}
	out, err := f.run("b1", in.Addr, "sh -c 'i=0; while [ $i -lt 1500 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); done; echo all 1500 started' 2>&1 | tail -3")
	if strings.Contains(out, "all 1500 started") {
		t.Errorf("1,500 processes started on a host bounded to %d: %q %v", local.PidsLimit, out, err)
	}
	t.Logf("the bomb: %q", strings.TrimSpace(out))
	if err := f.prov.Delete(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pids); err == nil {
		t.Errorf("%s outlived its host", pids)
	}
}
