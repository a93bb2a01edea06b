package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/metaladmin"
	"booted/internal/provider/registry"
	"booted/internal/testutil"
)

// fakeInstaller is a network namespace on the environment's bridge with a
// node's MAC: it does what that node's installer does on the network
// (take its lease, fetch its iPXE script, kernel, initrd and kickstart,
// report "installed"), for installers this machine cannot run.
type fakeInstaller struct {
	ns, dev, mac, ip string
}

func newFakeInstaller(t *testing.T, env, brName, mac, ip string) *fakeInstaller {
	t.Helper()
	f := &fakeInstaller{ns: "booted-" + env + "-fi", dev: bridge.ShortName("fi", env, "n"), mac: mac, ip: ip}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", f.ns)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", f.ns).Run()
		exec.Command("ip", "link", "del", f.dev).Run()
	})
	run("link", "add", f.dev, "type", "veth", "peer", "name", "eth0", "netns", f.ns)
	run("-n", f.ns, "link", "set", "eth0", "address", mac)
	run("-n", f.ns, "link", "set", "lo", "up")
	run("-n", f.ns, "link", "set", "eth0", "up")
	run("link", "set", f.dev, "master", brName, "up")
	return f
}

func (f *fakeInstaller) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", f.ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s (in the installer's namespace): %v %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (f *fakeInstaller) get(t *testing.T, url string) string {
	t.Helper()
	return f.run(t, "curl", "-fsS", "-m", "10", url)
}

// isoInstall imports a Rocky Linux ISO (built here with xorriso) and
// deploys node n3 (its own machine unplugged) from it: what the node
// fetches is the ISO's installer and a kickstart served to its address
// alone; its "installed" report turns its netboot off; an osimage in use
// cannot be deleted.
func (m *metalProject) isoInstall(t *testing.T, ctx context.Context) {
	env := m.proj.Env
	base := m.baseURL(t)
	const img = "rocky-9.3-x86_64"
	rocky := testutil.ISOLayouts["rocky"]

	// A random ISO is refused, saying what was looked for.
	random := testutil.MakeISO(t, "BACKUP_2024", map[string]string{"home/notes.txt": "x"})
	if err := m.r.OSImageImport(ctx, env, random, ""); err == nil || !strings.Contains(err.Error(), "not an installer booted knows: looked for .treeinfo") {
		t.Errorf("osimage:import of a random ISO: %v", err)
	}
	m.out.Reset()
	m.must(t, m.r.OSImageImport(ctx, env, testutil.MakeISO(t, "Rocky-9-3-x86_64-dvd", rocky), ""))
	if !strings.Contains(m.out.String(), img+": imported Rocky Linux 9.3 x86_64") {
		t.Errorf("osimage:import said %q", m.out)
	}
	m.r.JSON = true
	m.out.Reset()
	m.must(t, m.r.OSImageList(ctx, env))
	m.r.JSON = false
	var imgs []metaladmin.OSImageRow
	if err := unmarshalRows([]byte(m.out.String()), &imgs); err != nil || len(imgs) != 2 {
		t.Fatalf("osimage:list: %v %s", err, m.out)
	}
	if imgs[0].Name != "debian" || imgs[0].Method != "image" || len(imgs[0].Nodes) != 3 || imgs[1].Name != img || imgs[1].Method != "kickstart" || len(imgs[1].Nodes) != 0 {
		t.Errorf("osimage:list: %+v", imgs)
	}
	if got := httpGet(t, base+"/metal/images/"+img+"/tree/images/pxeboot/vmlinuz"); got != rocky["images/pxeboot/vmlinuz"] {
		t.Errorf("the controller serves the imported kernel as %q", got)
	}

	// node:deploy n3 from it; the fake installer acts on the network for
	// n3 (whose machine is powered on, unplugged).
	// n3 has a new address in the env file (its old one is in the
	// inventory): its enrollment is bound to the new one.
	mac, ip := "52:54:00:9e:00:0d", m.net+"23"
	m.ips[2] = ip
	m.write(t, metalRoles)
	fi := newFakeInstaller(t, env, bridge.Name(env), mac, ip)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.r.NodeDeploy(dctx, env, "n3", img) }()
	script := ""
	m.waitFor(t, "n3's iPXE script installs the Rocky ISO", time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(m.proj.Inventory, env, "metal", "node", "52-54-00-9e-00-0d.ipxe"))
		script = string(b)
		return strings.Contains(script, "inst.ks=")
	})
	fi.run(t, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-s", "/bin/true")
	fi.run(t, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	if got := fi.get(t, base+"/metal/node/52-54-00-9e-00-0d.ipxe"); got != script {
		t.Errorf("n3 fetched %q", got)
	}
	tree := base + "/metal/images/" + img + "/tree"
	for _, want := range []string{"kernel " + tree + "/images/pxeboot/vmlinuz ", "inst.repo=" + tree + " ", "inst.ks=" + base + "/metal/ks/n3/ks.cfg ", "initrd " + tree + "/images/pxeboot/initrd.img"} {
		if !strings.Contains(script, want) {
			t.Errorf("n3's iPXE script lacks %q:\n%s", want, script)
		}
	}
	if got := fi.get(t, tree+"/images/pxeboot/initrd.img"); got != rocky["images/pxeboot/initrd.img"] {
		t.Errorf("n3 fetched the initrd %q", got)
	}
	stages := func() string {
		var l []string
		for _, e := range m.events(t, "n3", "stage") {
			l = append(l, e.Detail)
		}
		return strings.Join(l, "; ")
	}
	fetchStart := time.Now()
	m.waitFor(t, "n3's stage installer-fetched", 30*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("node:deploy ended before n3 installed: %v", err)
		default:
		}
		ok := strings.Contains(stages(), "installer-fetched")
		if !ok && time.Since(fetchStart) > 25*time.Second {
			dl, _ := os.ReadFile(filepath.Join(m.proj.Inventory, env, "metal", "net", "prov", "dnsmasq.log"))
			al, _ := os.ReadFile(filepath.Join(m.proj.Inventory, env, "metal", "access.log"))
			t.Fatalf("no installer-fetched stage; stages: %s\ndnsmasq log tail: %s\naccess log tail: %s", stages(), tailOf(string(dl), 1500), tailOf(string(al), 1500))
		}
		return ok
	})
	ks := fi.get(t, base+"/metal/ks/n3/ks.cfg")
	if !strings.Contains(ks, "url --url="+tree+"\n") || !strings.Contains(ks, "--hostname=n3") {
		t.Errorf("n3's kickstart:\n%s", ks)
	}
	// Its kickstart and post step carry its token: nobody else gets them.
	for _, f := range []string{"ks.cfg", "post.sh"} {
		if res, err := http.Get(base + "/metal/ks/n3/" + f); err != nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("%s from another address: %v %v", f, res, err)
		} else {
			res.Body.Close()
		}
	}
	// The post step's "installed" report, as the installed system sends it.
	post := fi.get(t, base+"/metal/ks/n3/post.sh")
	const open, end = "<<'BOOTED_INSTALLED'\n", "BOOTED_INSTALLED\n"
	i, j := strings.Index(post, open), strings.Index(post, end)
	if i < 0 || j < i {
		t.Fatalf("post.sh has no installed report:\n%s", post)
	}
	conf := filepath.Join(t.TempDir(), "installed.conf")
	os.WriteFile(conf, []byte(post[i+len(open):j]), 0o600)
	fi.run(t, "curl", "-fsS", "-m", "10", "-o", "/dev/null", "-K", conf)
	m.waitFor(t, "n3's netboot turns off", time.Minute, func() bool {
		b, _ := os.ReadFile(filepath.Join(m.proj.Inventory, env, "metal", "node", "52-54-00-9e-00-0d.ipxe"))
		return strings.Contains(string(b), "sanboot")
	})
	if s := stages(); !strings.Contains(s, "installed:") {
		t.Errorf("n3's stages: %s", s)
	}
	cancel() // its first boot would come from a disk this machine has no installer to write
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("node:deploy, cancelled: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node:deploy did not stop within 30 s of its cancellation")
	}
	if err := m.r.OSImageDel(ctx, env, img); err == nil || !strings.Contains(err.Error(), "nodes n3 install from it") {
		t.Errorf("osimage:del of an osimage n3 installs from: %v", err)
	}
}

// afterISO checks osimage:del once n3 is deleted: the osimage and its
// files are gone and no longer served.
// baseURL is the controller's nginx, where nodes boot from.
func (m *metalProject) baseURL(t *testing.T) string {
	env, err := registry.LoadEnv(filepath.Join(m.proj.Root, "envs"), m.proj.Env)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + env.CallbackAddr()
}

func (m *metalProject) afterISO(t *testing.T, ctx context.Context) {
	const img = "rocky-9.3-x86_64"
	m.must(t, m.r.OSImageDel(ctx, m.proj.Env, img))
	if _, err := os.Stat(filepath.Join(m.proj.Inventory, m.proj.Env, "osimages", img)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("osimage:del left its files: %v", err)
	}
	res, err := http.Get(m.baseURL(t) + "/metal/images/" + img + "/tree/images/pxeboot/vmlinuz")
	if err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("a deleted osimage is still served: %v %v", res, err)
	} else {
		res.Body.Close()
	}
}

// net:create makes a network of the env file (its bridge, its dnsmasq);
// net:del stops it; an unknown name is refused with the names there are.
func TestMetal_NetCreateDel(t *testing.T) {
	testutil.RequireCommands(t, "dnsmasq", "curl")
	m := newMetalEnv(t, "  workers: {hosts: [n1, n2, n3], min: 1, max: 3}\napi:\n  admins: [ops]\n")
	ctx := context.Background()
	env := m.proj.Env
	t.Cleanup(func() { m.r.EnvDestroy(context.Background(), env) })
	if err := m.r.NetCreate(ctx, env, "lab"); err == nil || !strings.Contains(err.Error(), `network "lab" is not in provider.baremetal.networks`) || !strings.Contains(err.Error(), "it has: prov") {
		t.Errorf("net:create of an unknown network: %v", err)
	}
	list := func() metaladmin.NetRow {
		t.Helper()
		m.r.JSON = true
		defer func() { m.r.JSON = false }()
		m.out.Reset()
		m.must(t, m.r.NetList(ctx, env))
		var nets []metaladmin.NetRow
		if err := unmarshalRows([]byte(m.out.String()), &nets); err != nil || len(nets) != 1 {
			t.Fatalf("net:list: %v %s", err, m.out)
		}
		return nets[0]
	}
	br := bridge.Name(env)
	m.must(t, m.r.NetCreate(ctx, env, "prov"))
	nw := list()
	var pid int
	if _, err := fmt.Sscanf(nw.DHCP, "dnsmasq pid %d", &pid); err != nil || exec.Command("kill", "-0", fmt.Sprint(pid)).Run() != nil {
		t.Fatalf("after net:create: %+v", nw)
	}
	if err := exec.Command("ip", "link", "show", br).Run(); err != nil {
		t.Errorf("net:create made no bridge %s: %v", br, err)
	}
	m.must(t, m.r.NetCreate(ctx, env, "prov")) // again: the same dnsmasq
	if again := list(); again.DHCP != nw.DHCP {
		t.Errorf("net:create twice: %s, then %s", nw.DHCP, again.DHCP)
	}
	// The REST API lists what net:list and osimage:list show, row for row.
	m.r.APIListen = testutil.FreePort(t)
	m.must(t, m.r.CredsCreate(ctx, env, "ops"))
	startAPIServe(t, m.r, env, func() {})
	get := func(path string) []byte {
		t.Helper()
		out, err := exec.Command("curl", "-fsS", "-m", "10", "-K", filepath.Join(m.proj.Inventory, env, "creds", "ops.curlrc"), "https://"+m.r.APIListen+path).Output()
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return out
	}
	var viaAPI []metaladmin.NetRow
	if err := json.Unmarshal(get("/api/v1/networks"), &viaAPI); err != nil || len(viaAPI) != 1 || viaAPI[0] != nw {
		t.Errorf("GET /api/v1/networks: %+v %v, want [%+v] as net:list shows it", viaAPI, err, nw)
	}
	var imgs []metaladmin.OSImageRow
	if err := json.Unmarshal(get("/api/v1/osimages"), &imgs); err != nil || len(imgs) != 1 || imgs[0].Name != "debian" || len(imgs[0].Nodes) != 3 {
		t.Errorf("GET /api/v1/osimages: %+v %v, want booted's debian for n1..n3", imgs, err)
	}
	m.must(t, m.r.NetDel(ctx, env, "prov"))
	if nw := list(); nw.DHCP != "stopped" {
		t.Errorf("after net:del: %+v", nw)
	}
	gone := func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); return err != nil }
	for i := 0; i < 50 && !gone(); i++ { // it removes its pid file, then exits
		time.Sleep(100 * time.Millisecond)
	}
	if !gone() {
		t.Errorf("net:del left dnsmasq (pid %d) running", pid)
	}
	if err := exec.Command("ip", "link", "show", br).Run(); err == nil {
		t.Errorf("net:del left the bridge %s", br)
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
