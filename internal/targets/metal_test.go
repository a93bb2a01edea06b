package targets

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/metaladmin"
	"booted/internal/testutil"
)

// metalProject is a baremetal environment on a free subnet with three
// nodes (n1, n2 and n3), each an emulated machine of metal:lab: a qemu
// machine with an empty disk that netboots and an ipmi_sim BMC.
type metalProject struct {
	*fixture
	ports [3]int
	ips   [3]string // a node's address when not the usual .11, .12, .13
	net   string    // the nodes' subnet prefix "10.x.y."
	// With a site, n2 is on site s's network (its subnet), served and
	// powered by the site's conductor through NATS.
	site     string // the site's subnet
	natsURLs string
}

func (m *metalProject) write(t *testing.T, roles string) {
	t.Helper()
	var nodes strings.Builder
	for i, p := range m.ports {
		ip := m.ips[i]
		if ip == "" {
			ip = fmt.Sprintf("%s%d", m.net, 11+i)
		}
		network := "prov"
		if i == 1 && m.site != "" {
			network = "sprov"
		}
		fmt.Fprintf(&nodes, "      - name: n%d\n        nics: [{mac: \"52:54:00:9e:00:%02x\", ip: %s, network: %s, primary: true}]\n        bmc: {address: 127.0.0.1, port: %d, user: admin}\n", i+1, i+11, ip, network, p)
	}
	local := "" // a role of local hosts shares the nodes' bridge and subnet
	if strings.Contains(roles, "provider: local") {
		local = "  local: {subnet: " + m.proj.Subnet + "}\n"
	}
	siteNet, sites := "", ""
	if m.site != "" {
		siteNet = "      - {name: sprov, site: s}\n"
		sites = fmt.Sprintf("nats: {urls: [%s]}\nsites:\n  s: {hosts: [n2], subnet: %s}\n", m.natsURLs, m.site)
	}
	body := fmt.Sprintf(`version: 1
provider:
  type: baremetal
%s  baremetal:
    networks:
      - {name: prov, bridge: %s, subnet: %s}
%s    nodes:
%s    stages: {power_on: 30s, dhcp: 20s, installer: 1m, installed: 5m, first_boot: 5m}
    retries: 1
timeouts: {boot: 15m, ssh: 15s, ping: 2s}
sizes:
  metal.small: {cpus: 1, memory_mb: 512, disk_gb: 2}
  metal.big: {cpus: 2, memory_mb: 4096, disk_gb: 2}
%sroles:
%s`, local, bridge.Name(m.proj.Env), m.proj.Subnet, siteNet, nodes.String(), sites, roles)
	if err := os.WriteFile(filepath.Join(m.proj.Root, "envs", m.proj.Env+".yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newMetalEnv is a project whose environment is baremetal, with roles
// (no lab: nodes n1..n3 whose BMCs nothing answers yet).
func newMetalEnv(t *testing.T, roles string) *metalProject {
	f := newFixture(t, testutil.DefaultEnv)
	m := &metalProject{fixture: f, net: strings.TrimSuffix(f.proj.Gateway, "1")}
	for i := range m.ports {
		m.ports[i] = testutil.FreeUDP(t)
	}
	m.write(t, roles)
	return m
}

// metalRoles are the roles of the bare-metal test until it deploys hello:
// the load balancer is a local host (the local provider makes the site's
// network).
const metalRoles = "  loadbalancers: {hosts: [lb1], min: 1, max: 1, provider: local}\n  workers: {hosts: [n1, n2, n3], min: 1, max: 3}\n"

func newMetalProject(t *testing.T) *metalProject {
	testutil.RequireQemu(t)
	for _, c := range []string{"dnsmasq", "ipmi_sim", "ipmitool", "mkfs.vfat", "syslinux", "busybox"} {
		if _, err := exec.LookPath(c); err != nil && !testutil.InCI() {
			t.Skipf("%s is missing: the bare-metal test needs dnsmasq, openipmi, ipmitool, syslinux, dosfstools and busybox-static (go run mage.go test installs them)", c)
		}
	}
	testutil.ExclusiveCPU(t) // TCG machines take the cores for minutes
	m := newMetalEnv(t, metalRoles)
	proj := m.proj
	// n2 is on site s's network: 10.X-100.Y.0/24 (X.Y: the environment's, X >= 200).
	p := strings.Split(proj.Subnet, ".")
	x, _ := strconv.Atoi(p[1])
	m.site = fmt.Sprintf("%s.%d.%s.0/24", p[0], x-100, p[2])
	m.ips[1] = fmt.Sprintf("%s.%d.%s.12", p[0], x-100, p[2])
	m.natsURLs = "tls://" + strings.Replace(testutil.FreePort(t), "127.0.0.1", proj.Gateway, 1)
	m.write(t, metalRoles)
	t.Cleanup(func() {
		ctx := context.Background()
		if err := m.r.EnvDestroy(ctx, proj.Env); err != nil {
			t.Logf("env:destroy: %v", err)
		}
		for i := range m.ports {
			if vm, bmc := m.labRunning(t, fmt.Sprintf("n%d", i+1)); vm || bmc {
				t.Errorf("n%d: env:destroy left its machine (%v) or BMC (%v) running", i+1, vm, bmc)
			}
		}
	})
	return m
}

// startSite starts what site s runs on: a NATS server (as nats:config
// says), the environment's networks (the site's, a namespace), and a
// conductor in the site's network (a process of its own); it returns the
// conductor's output.
func (m *metalProject) startSite(t *testing.T) *testutil.SyncBuffer {
	ctx := context.Background()
	env := m.proj.Env
	confs := m.natsConfig(t, env)
	testutil.StartNATSFrom(t, confs, []string{m.natsURLs})
	m.must(t, m.r.NginxRestart(ctx, env))
	cmd := exec.Command("nsenter", "--net=/run/netns/"+bridge.SiteNetns(env, "s"), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BOOTED_TEST_CONDUCTOR="+m.proj.Root+"|"+env+"|s")
	var log testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("conductor of site s:\n%s", log.String())
		}
	})
	m.waitFor(t, "site s's conductor beating", 30*time.Second, func() bool {
		r := *m.r
		var out testutil.SyncBuffer
		r.JSON, r.Out = true, &out
		return r.ConductorsList(ctx, env) == nil && strings.Contains(out.String(), `"site":"s"`)
	})
	return &log
}

// labRunning says whether node name's emulated machine and BMC run, from
// their pid files.
func (m *metalProject) labRunning(t *testing.T, name string) (vm, bmc bool) {
	alive := func(f string) bool {
		b, err := os.ReadFile(filepath.Join(m.proj.Inventory, m.proj.Env, "lab", name, f))
		if err != nil {
			return false
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		return pid > 0 && exec.Command("kill", "-0", fmt.Sprint(pid)).Run() == nil
	}
	return alive("qemu.pid"), alive("ipmi_sim.pid")
}

// fetches counts the installer fetches of the node at ip, in the access
// log of the metal files under dir (metal, or sites/SITE/metal).
func (m *metalProject) fetches(t *testing.T, dir, ip string) int {
	b, _ := os.ReadFile(filepath.Join(m.proj.Inventory, m.proj.Env, dir, "access.log"))
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"remote":"`+ip+`"`) && strings.Contains(l, "installer.img") {
			n++
		}
	}
	return n
}

func (m *metalProject) count(t *testing.T, file, substr string) int {
	b, _ := os.ReadFile(filepath.Join(m.proj.Inventory, m.proj.Env, file))
	return strings.Count(string(b), substr)
}

func (m *metalProject) events(t *testing.T, host, kind string) []inventory.Event {
	st, err := inventory.Open(context.Background(), filepath.Join(m.proj.Inventory, "booted.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), m.proj.Env, host, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []inventory.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Bare metal, end to end on emulated machines: a node whose NIC is
// unplugged fails at the DHCP stage (tried twice: retries 1) with its
// console; a node whose BMC is down fails at power-on naming node and BMC;
// two nodes go PXE → installer → disk → ready, get hello behind the load
// balancer, and a power cycle boots the disk (no second install, same key).
func TestMetal_DeployStagesAndPowerCycle(t *testing.T) {
	m := newMetalProject(t)
	ctx := context.Background()
	env := m.proj.Env
	conductorLog := m.startSite(t)
	m.must(t, m.r.MetalLab(ctx, env))
	for _, n := range []string{"n1", "n2", "n3"} {
		if fi, err := os.Stat(filepath.Join(m.proj.Inventory, env, "bmc", n)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: the BMC password file: %v %v", n, fi, err)
		}
		// its port on the provisioning network passes its MAC and address
		// alone, as a switch's port security would (on this machine's
		// bridge, or its site's)
		if tap := bridge.ShortName("bm", env, n); !testutil.PortGuarded("", env, tap) && !testutil.PortGuarded(bridge.SiteNetns(env, "s"), env, tap) {
			t.Errorf("%s: its lab port %s is not guarded", n, tap)
		}
	}
	m.out.Reset()
	m.must(t, m.r.Power(ctx, "status", env, "n1"))
	if !strings.Contains(m.out.String(), "n1: power off") {
		t.Fatalf("power:status of a new machine: %q", m.out)
	}

	// node:create takes a listed node into the environment (its BMC
	// answers); it stays off.
	if err := m.r.NodeCreate(ctx, env, "n9"); err == nil || !strings.Contains(err.Error(), "node n9 is not listed") {
		t.Errorf("node:create of an unknown node: %v", err)
	}
	m.r.JSON = true
	m.out.Reset()
	m.must(t, m.r.NodeCreate(ctx, env, "n1"))
	m.r.JSON = false
	var imgs []imageRow
	if err := unmarshalRows([]byte(m.out.String()), &imgs); err != nil || len(imgs) != 1 || imgs[0].Name != "n1" || imgs[0].Power != "stopped" {
		t.Errorf("image:list after node:create n1: %v %s", err, m.out)
	}

	// node:secret: from standard input, never echoed, for listed nodes only.
	pwFile := filepath.Join(m.proj.Inventory, env, "bmc", "n1")
	pw, _ := os.ReadFile(pwFile)
	if err := m.r.NodeSecret(ctx, env, "n9", strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "node n9 is not listed") {
		t.Errorf("node:secret of an unknown node: %v", err)
	}
	if err := m.r.NodeSecret(ctx, env, "n1", strings.NewReader(strings.Repeat("p", 21))); err == nil || !strings.Contains(err.Error(), "at most 20") {
		t.Errorf("node:secret with a 21-character password: %v", err)
	}
	m.out.Reset()
	m.must(t, m.r.NodeSecret(ctx, env, "n1", strings.NewReader(string(pw)+"\n")))
	if fi, err := os.Stat(pwFile); err != nil || fi.Mode().Perm() != 0o600 || strings.Contains(m.out.String(), string(pw)) {
		t.Errorf("node:secret: %v %v, printed %q", fi, err, m.out)
	}
	m.must(t, m.r.Power(ctx, "status", env, "n1"))

	// n3's NIC is unplugged: its tap exists, on no bridge (the lab plugs
	// in only the taps it makes).
	tap := bridge.ShortName("bm", env, "n3")
	if out, err := exec.Command("ip", "tuntap", "add", tap, "mode", "tap").CombinedOutput(); err != nil {
		t.Fatalf("ip tuntap add %s: %v %s", tap, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", tap).Run() })
	exec.Command("ip", "link", "set", tap, "up").Run()
	start := time.Now()
	m.must(t, m.r.ImageStart(ctx, env, "n3"))
	m.must(t, m.r.HostsLogged(ctx, env))
	h := m.hosts(t)["n3"]
	t.Logf("n3 (unplugged): %v: %s", time.Since(start).Round(time.Second), h.Reason)
	if h.State != "failed" || !strings.Contains(h.Reason, "stage dhcp-lease not reached") || !strings.Contains(h.Reason, "console:") {
		t.Errorf("n3 without a lease: %+v", h)
	}
	if n := len(m.events(t, "n3", "enrollment-issued")); n != 2 {
		t.Errorf("n3 was provisioned %d times, want 2 (retries: 1)", n)
	}
	if d := time.Since(start); d > 3*time.Minute {
		t.Errorf("n3 failed after %v: two tries, each within its 30 s power-on and 20 s DHCP stages, take well under three minutes", d)
	}

	// An installer ISO imported, n3 deployed from it (its machine still
	// unplugged: a namespace plays its installer on the network).
	m.isoInstall(t, ctx)

	// n3's BMC is down: image:start fails at once, naming node and BMC.
	if out, err := exec.Command("kill", readPid(t, filepath.Join(m.proj.Inventory, env, "lab", "n3", "ipmi_sim.pid"))).CombinedOutput(); err != nil {
		t.Fatalf("kill n3's BMC: %v %s", err, out)
	}
	err := m.r.ImageStart(ctx, env, "n3")
	bmcAddr := fmt.Sprintf("127.0.0.1:%d", m.ports[2])
	if err == nil || !strings.Contains(err.Error(), "n3") || !strings.Contains(err.Error(), bmcAddr) {
		t.Errorf("image:start with its BMC down: %v (want n3 and %s)", err, bmcAddr)
	}

	// Deleting it forgets its install even with its BMC down (and says so).
	m.must(t, m.r.NodeDel(ctx, env, "n3"))
	if h := m.hosts(t)["n3"]; h.State != "terminated" {
		t.Errorf("n3 after image:del: %+v", h)
	}

	m.afterISO(t, ctx)

	// The two others, with hello behind the load balancer.
	m.proj.GitInit(t, "v1")
	m.write(t, "  loadbalancers: {hosts: [lb1], min: 1, max: 1, provider: local}\n  workers: {hosts: [n1, n2], min: 1, max: 2, service: hello, version: v1}\n")
	siteNs := bridge.SiteNetns(env, "s")
	start = time.Now()
	m.must(t, m.r.EnvStartAll(ctx, env))
	t.Logf("env:startAll (two nodes, PXE to serving): %v", time.Since(start).Round(time.Second))
	for _, n := range []string{"n1", "n2"} {
		if h := m.hosts(t)[n]; h.State != "serving" {
			t.Errorf("%s: %+v", n, h)
		}
		var stages []string
		for _, e := range m.events(t, n, "stage") {
			stages = append(stages, e.Detail)
		}
		t.Logf("%s stages: %s", n, strings.Join(stages, "; "))
		all := strings.Join(stages, "; ")
		for _, st := range []string{"power-on at", "dhcp-lease at", "installer-fetched at", "installed:", "first-boot at"} {
			if strings.Count(all, st) != 1 {
				t.Errorf("%s: stage %q recorded %d times, want once: %s", n, st, strings.Count(all, st), all)
			}
		}
	}
	// node:list and net:list: installed nodes, power as the BMCs say (n3's
	// is down), no password; the network's dnsmasq runs.
	m.r.JSON = true
	m.out.Reset()
	m.must(t, m.r.NodeList(ctx, env))
	var nodes []metaladmin.NodeRow
	if err := unmarshalRows([]byte(m.out.String()), &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("node:list: %v %s", err, m.out)
	}
	if nodes[0].Power != "on" || !strings.HasPrefix(nodes[1].Install, "installed") || nodes[2].Power != "no answer" || nodes[2].State != "terminated" {
		t.Errorf("node:list: %+v", nodes)
	}
	if strings.Contains(m.out.String(), string(pw)) {
		t.Errorf("node:list prints a BMC password")
	}
	m.out.Reset()
	m.must(t, m.r.NetList(ctx, env))
	m.r.JSON = false
	var nets []metaladmin.NetRow
	if err := unmarshalRows([]byte(m.out.String()), &nets); err != nil || len(nets) != 2 || !strings.HasPrefix(nets[0].DHCP, "dnsmasq pid ") || nets[0].Nodes != 2 ||
		!strings.HasPrefix(nets[1].DHCP, "dnsmasq pid ") || nets[1].Nodes != 1 {
		t.Errorf("net:list: %v %s", err, m.out)
	}

	// n2 was deployed, served and powered by site s: its conductor
	// started its network's dnsmasq (in the site's namespace), powered it
	// through its BMC (there too), its netboot files and callbacks went
	// through the site's nginx, none through the controller's.
	var siteIno syscall.Stat_t
	syscall.Stat("/run/netns/"+siteNs, &siteIno)
	inSite := func(pidFile string) bool {
		l, _ := os.Readlink("/proc/" + readPid(t, filepath.Join(m.proj.Inventory, env, pidFile)) + "/ns/net")
		return l == fmt.Sprintf("net:[%d]", siteIno.Ino)
	}
	if !inSite("sites/s/metal/net/sprov/dnsmasq.pid") || !inSite("lab/n2/ipmi_sim.pid") || !inSite("lab/n2/qemu.pid") {
		t.Errorf("site s's dnsmasq, n2's BMC and machine are not all in the site's network %s", siteNs)
	}
	if inSite("metal/net/prov/dnsmasq.pid") || inSite("lab/n1/qemu.pid") {
		t.Errorf("network prov's dnsmasq or n1 in site s's network")
	}
	if n := m.fetches(t, "sites/s/metal", m.ips[1]); n != 1 {
		t.Errorf("n2 fetched its installer %d times from its site's nginx, want 1", n)
	}
	if n := m.fetches(t, "metal", m.ips[1]) + m.count(t, "booted.log", "name=n2&"); n != 0 {
		t.Errorf("n2 fetched from or phoned home to the controller's nginx %d times", n)
	}
	if n := m.count(t, "sites/s/booted.log", "name=n2&"); n == 0 {
		t.Errorf("n2 did not phone home to its site")
	}
	for _, job := range []string{"host.build on n2", "host.boot on n2", "host.installed on n2"} {
		if !strings.Contains(conductorLog.String(), job) {
			t.Errorf("site s's conductor did no %s", job)
		}
	}
	if strings.Contains(conductorLog.String(), " on n1") {
		t.Errorf("site s's conductor worked on n1, a node of no site")
	}

	// hosts:locate and queries know where nodes are: their network, its
	// bridge, their BMC (an attribute booted fills).
	m.r.JSON = true
	m.out.Reset()
	m.must(t, m.r.HostsLocate(ctx, env, "n1"))
	var loc []hostquery.LocateRow
	if err := unmarshalRows(m.out.Bytes(), &loc); err != nil || len(loc) != 1 || loc[0].Network != "prov" || loc[0].Bridge == "" || loc[0].BMC == "" {
		t.Errorf("hosts:locate n1: %v %s", err, m.out)
	}
	m.out.Reset()
	m.must(t, m.r.HostsQuery(ctx, env, "(connected:prov or connected:sprov) and attr:bmc=*:* and not state:terminated"))
	m.r.JSON = false
	if n := strings.Count(m.out.String(), `"name":"n`); n != 2 {
		t.Errorf("hosts:query connected:prov or sprov, and attr:bmc: %d nodes (want n1 and n2, serving):\n%s", n, m.out)
	}

	// The load balancer is a local host on the nodes' network.
	lb := m.hosts(t)["lb1"]
	if lb.State != "serving" || !strings.HasPrefix(lb.IP, m.net) {
		t.Errorf("lb1 (local host): %+v", lb)
	}
	if err := m.r.NetDel(ctx, env, "prov"); err == nil || !strings.Contains(err.Error(), "nodes n1 (serving) are on it") {
		t.Errorf("net:del of a network in use: %v", err)
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + lb.IP + "/")
	if err != nil {
		t.Fatalf("through the load balancer: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "Hello") {
		t.Errorf("through the load balancer: %d %q", res.StatusCode, body)
	}
	m.must(t, m.r.ServiceTest(ctx, env, "hello"))

	// n1 is done with: powered off, its TCG machine leaves a core to the
	// two that follow.
	m.must(t, m.r.ImageStop(ctx, env, "n1"))

	// A power cycle boots the disk: no installer, no install report, the
	// same host key.
	key := m.hosts(t)["n2"].HostKey
	fetches := m.fetches(t, "sites/s/metal", m.ips[1])
	installs := len(m.events(t, "n2", "stage"))
	phoned := m.count(t, "sites/s/booted.log", "name=n2&")
	m.must(t, m.r.Power(ctx, "cycle", env, "n2"))
	if !strings.Contains(conductorLog.String(), "host.power-cycle on n2") {
		t.Errorf("power:cycle n2: not through its site's conductor")
	}
	// Meanwhile, a bare-metal instance: the free node (n3: its BMC back,
	// its NIC plugged in) is installed for the user, runs, and is given
	// back.
	m.must(t, m.r.MetalLab(ctx, env))
	if out, err := exec.Command("ip", "link", "set", tap, "master", bridge.Name(env)).CombinedOutput(); err != nil {
		t.Fatalf("plug n3 in: %v %s", err, out)
	}
	m.r.User, m.r.JSON = "ursula", true
	m.out.Reset()
	start = time.Now()
	m.must(t, m.r.InstancesRun(ctx, env, "ami-debian12", 1))
	t.Logf("instances:run on bare metal (n3, PXE to running): %v", time.Since(start).Round(time.Second))
	var rows []instanceRow
	if err := unmarshalRows([]byte(m.out.String()), &rows); err != nil || len(rows) != 1 || rows[0].State != "running" || rows[0].Address != m.ips[2] {
		t.Fatalf("instances:run on bare metal: %v %s", err, m.out)
	}
	if err := m.r.InstancesRun(ctx, env, "ami-debian12", 1); err == nil || !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Errorf("a second instance with no node free: %v", err)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for m.count(t, "sites/s/booted.log", "name=n2&") == phoned && time.Now().Before(deadline) {
		time.Sleep(2 * time.Second)
	}
	if m.count(t, "sites/s/booted.log", "name=n2&") == phoned {
		t.Fatalf("n2 did not phone home within 4 minutes of its power cycle; console:\n%s", m.console(t, "n2"))
	}
	m.must(t, m.r.HostsLogged(ctx, env))
	m.must(t, m.r.HostsFilter(ctx, env))
	h = m.hosts(t)["n2"]
	if h.HostKey != key || (h.State != "ready" && h.State != "serving") {
		t.Errorf("n2 after a power cycle: %+v (key was %s)", h, key)
	}
	if n := m.fetches(t, "sites/s/metal", m.ips[1]); n != fetches {
		t.Errorf("the power cycle fetched the installer again (%d fetches, was %d)", n, fetches)
	}
	if n := len(m.events(t, "n2", "stage")); n != installs {
		t.Errorf("the power cycle went through install stages again: %d stage events, was %d", n, installs)
	}

	m.r.JSON = false
	m.must(t, m.r.InstancesTerminate(ctx, env, rows[0].ID))
	m.out.Reset()
	m.must(t, m.r.Power(ctx, "status", env, "n3"))
	if !strings.Contains(m.out.String(), "n3: power off") {
		t.Errorf("n3 after its instance was terminated: %s", m.out)
	}

	// metal:labDown stops every emulated machine and BMC of the
	// environment (n2 was still running, in site s's namespace).
	if vm, bmc := m.labRunning(t, "n2"); !vm || !bmc {
		t.Errorf("before metal:labDown, n2's machine (%v) and BMC (%v) should run", vm, bmc)
	}
	m.must(t, m.r.MetalLabDown(ctx, env))
	for i := range m.ports {
		if vm, bmc := m.labRunning(t, fmt.Sprintf("n%d", i+1)); vm || bmc {
			t.Errorf("n%d: metal:labDown left its machine (%v) or BMC (%v) running", i+1, vm, bmc)
		}
	}
}

func (m *metalProject) console(t *testing.T, name string) string {
	b, _ := os.ReadFile(filepath.Join(m.proj.Inventory, m.proj.Env, "console", name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func readPid(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
