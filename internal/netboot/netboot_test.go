package netboot

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"booted/internal/bridge"
	"booted/internal/testutil"
)

func server(dir string) *Server {
	return &Server{
		Net: Network{Name: "prov", Bridge: "bt-metal", Subnet: netip.MustParsePrefix("10.82.0.0/24"), Server: netip.MustParseAddr("10.82.0.1")},
		Dir: dir, BootURL: "http://10.82.0.1:8078/metal/boot.ipxe",
		Nodes: []Node{{Name: "mn2", MAC: "52:54:00:82:00:12", Addr: netip.MustParseAddr("10.82.0.12")},
			{Name: "mn1", MAC: "52:54:00:82:00:11", Addr: netip.MustParseAddr("10.82.0.11")}},
	}
}

// The configuration serves the bridge alone: static leases per node, no
// DNS, no default route unless the network has a gateway, iPXE chained to
// HTTP, the RA iPXE waits for; dnsmasq itself accepts it.
func TestRender(t *testing.T) {
	s := server("/run/x")
	b, err := s.Render()
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/dnsmasq.conf", b)
	conf := string(b)
	for _, want := range []string{"port=0\n", "interface=bt-metal\nbind-interfaces\n", "dhcp-option=option:router\n",
		"dhcp-host=52:54:00:82:00:11,10.82.0.11,mn1\ndhcp-host=52:54:00:82:00:12,10.82.0.12,mn2\n",
		"dhcp-range=10.82.0.0,static,255.255.255.0,1h\n", "dhcp-boot=tag:ipxe,http://10.82.0.1:8078/metal/boot.ipxe\n", "enable-ra\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("the configuration lacks %q", want)
		}
	}
	s.Net.Gateway = netip.MustParseAddr("10.82.0.254")
	s.Net.DNS = []netip.Addr{netip.MustParseAddr("10.82.0.53")}
	b, _ = s.Render()
	if !strings.Contains(string(b), "dhcp-option=option:router,10.82.0.254\n") || !strings.Contains(string(b), "dhcp-option=option:dns-server,10.82.0.53\n") {
		t.Errorf("a network's gateway and nameservers are not handed out:\n%s", b)
	}
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		if testutil.InCI() {
			t.Fatal("dnsmasq is missing in CI")
		}
		t.Skip("dnsmasq is missing (apt-get install dnsmasq-base): the configuration is not checked by dnsmasq --test")
	}
	f := filepath.Join(t.TempDir(), "dnsmasq.conf")
	os.WriteFile(f, b, 0o600)
	if out, err := exec.CommandContext(context.Background(), "dnsmasq", "--test", "--conf-file="+f).CombinedOutput(); err != nil {
		t.Fatalf("dnsmasq --test: %v: %s", err, out)
	}
}

// A node's lease time is read from dnsmasq's log, by MAC, the last one.
func TestLease(t *testing.T) {
	dir := t.TempDir()
	s := server(dir)
	now := time.Now()
	line := func(t time.Time, mac string) string {
		return t.Format("Jan _2 15:04:05") + " dnsmasq-dhcp[12]: 474 DHCPACK(bt-metal) 10.82.0.11 " + mac + " mn1\n"
	}
	os.WriteFile(s.Log(), []byte(line(now.Add(-time.Hour), "52:54:00:82:00:11")+line(now.Add(-time.Minute), "52:54:00:82:00:11")+line(now, "52:54:00:82:00:12")), 0o600)
	got := s.Lease("52:54:00:82:00:11")
	if want := now.Add(-time.Minute).Truncate(time.Second); !got.Equal(want) {
		t.Errorf("Lease = %v, want %v", got, want)
	}
	if !s.Lease("52:54:00:82:00:99").IsZero() {
		t.Error("a MAC that never got a lease has one")
	}
}

// A node's script is named by its MAC; the disk script boots the disk.
func TestScripts(t *testing.T) {
	if n := ScriptName("52:54:00:AA:00:01"); n != "52-54-00-aa-00-01.ipxe" {
		t.Errorf("ScriptName = %q", n)
	}
	if d := string(DiskScript("mn1")); !strings.HasPrefix(d, "#!ipxe") || !strings.Contains(d, "sanboot") {
		t.Errorf("DiskScript:\n%s", d)
	}
	i := string(InstallScript("mn1", "http://h/k", "http://h/i", "console=ttyS0"))
	if !strings.Contains(i, "kernel http://h/k") || !strings.Contains(i, "initrd http://h/i") {
		t.Errorf("InstallScript:\n%s", i)
	}
}

// Two conductors of one site start at once and each brings up the site's
// network: one dnsmasq serves it, and neither fails ("address in use").
func TestEnsure_TwoAtOnce(t *testing.T) {
	testutil.RequireRoot(t, "a bridge and dnsmasq on it", "dnsmasq", "ip")
	ctx := context.Background()
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	br := bridge.Name(proj.Env)
	gw := netip.MustParsePrefix(proj.Gateway + "/24")
	if err := bridge.Ensure(ctx, br, gw, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bridge.Remove(context.Background(), br) })
	dir := t.TempDir()
	srv := func() *Server {
		return &Server{Net: Network{Name: "prov", Bridge: br, Subnet: gw.Masked(), Server: gw.Addr()}, Dir: dir, BootURL: "http://" + proj.Gateway + ":8078/metal/boot.ipxe"}
	}
	t.Cleanup(func() { srv().Stop(context.Background()) })
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errs <- srv().Ensure(ctx) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("one of two at once: %v", err)
		}
	}
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(b), filepath.Join(dir, "dnsmasq.conf")) {
			n++
		}
	}
	if n != 1 || srv().PID() == 0 {
		t.Errorf("%d dnsmasq for the network (pid file: %d), want 1", n, srv().PID())
	}
}
