package baremetal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/config"
	"booted/internal/provider"
)

const good = `version: 1
provider:
  type: baremetal
  baremetal:
    networks:
      - {name: prov, bridge: bt-metal, subnet: 10.82.0.0/24}
    nodes:
      - name: mn1
        nics: [{mac: "52:54:00:82:00:11", ip: 10.82.0.11, network: prov, primary: true}]
        bmc: {address: 127.0.0.1, port: 16211, user: admin}
      - name: mn2
        nics: [{mac: "52:54:00:82:00:12", ip: 10.82.0.12, network: prov}]
        bmc: {address: 127.0.0.1, port: 16212, user: admin}
    stages: {dhcp: 45s}
roles:
  workers: {hosts: [mn1, mn2], min: 1, max: 2}
`

func load(t *testing.T, body string) (*config.Env, error) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(body), 0o644)
	return config.Load(dir, "m", config.ProviderFunc(Decode))
}

func TestSettings_Good(t *testing.T) {
	env, err := load(t, good)
	if err != nil {
		t.Fatal(err)
	}
	s := env.Provider.Settings.(*Settings)
	if s.OSImage != "debian" || s.Stages.DHCP.D().Seconds() != 45 || s.Stages.Installed.D().Minutes() != 10 || s.Nodes[1].Arch != "x86_64" {
		t.Errorf("defaults: %+v", s)
	}
	if a, _ := s.DefaultCallback(); a != "10.82.0.1" {
		t.Errorf("nodes phone home to %q, want the network's first address", a)
	}
	if n, _ := s.node("mn2"); n.Primary().IP != "10.82.0.12" {
		t.Errorf("a node's only NIC is its primary: %+v", n.Primary())
	}
}

// Each mistake is named by line and field, with what to do; all at once.
func TestSettings_Errors(t *testing.T) {
	for _, c := range []struct {
		name, from, to string
		want           []string
	}{
		{"BadMAC", `"52:54:00:82:00:12"`, `"52:54:00:82:00"`, []string{`provider.baremetal.nodes[1].nics[0].mac: "52:54:00:82:00" is not a MAC address`}},
		{"SameMAC", `"52:54:00:82:00:12"`, `"52:54:00:82:00:11"`, []string{"nodes[1].nics[0].mac: 52:54:00:82:00:11 is also mn1's"}},
		{"IPOutside", `ip: 10.82.0.12`, `ip: 10.83.0.12`, []string{"nodes[1].nics[0].ip: 10.83.0.12 is not in network prov (10.82.0.0/24)"}},
		{"SameIP", `ip: 10.82.0.12`, `ip: 10.82.0.11`, []string{"nodes[1].nics[0].ip: 10.82.0.11 is also mn1's"}},
		{"UnknownNetwork", `network: prov}]
        bmc: {address: 127.0.0.1, port: 16212`, `network: data}]
        bmc: {address: 127.0.0.1, port: 16212`, []string{`nodes[1].nics[0].network: "data" is not one of the networks`}},
		{"PasswordInFile", `port: 16212, user: admin}`, `port: 16212, user: admin, password: hunter2}`, []string{"m.yaml:13: field password is not known"}},
		{"BadBMCPort", `port: 16212`, `port: 70000`, []string{"nodes[1].bmc.port: 70000 is not a UDP port"}},
		{"BadSubnet", `subnet: 10.82.0.0/24`, `subnet: 10.82.0.0/8`, []string{`networks[0].subnet: "10.82.0.0/8": use an IPv4 subnet from /16 to /29`}},
		{"LongBridge", `bridge: bt-metal`, `bridge: a-very-long-bridge-name`, []string{`networks[0].bridge: "a-very-long-bridge-name"`}},
		{"NoNodes", "    nodes:\n", "    nodex:\n", []string{"field nodex is not known"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := strings.Replace(good, c.from, c.to, 1)
			if body == good {
				t.Fatalf("%q is not in the file", c.from)
			}
			_, err := load(t, body)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the password: %v", err)
			}
		})
	}
}

// A site's network: the site gives it its bridge, subnet and router; its
// nodes must be the site's hosts.
const sited = `version: 1
provider:
  type: baremetal
  baremetal:
    networks:
      - {name: prov, bridge: bt-metal, subnet: 10.82.0.0/24}
      - {name: east, site: e}
    nodes:
      - name: mn1
        nics: [{mac: "52:54:00:82:00:11", ip: 10.82.0.11, network: prov}]
        bmc: {address: 127.0.0.1, port: 16211, user: admin}
      - name: mn2
        nics: [{mac: "52:54:00:82:00:12", ip: 10.86.0.12, network: east}]
        bmc: {address: 127.0.0.1, port: 16212, user: admin}
  local: {subnet: 10.82.0.0/24}
roles:
  workers: {hosts: [mn1, mn2], min: 1, max: 2}
  loadbalancers: {hosts: [lb1], provider: local}
nats: {urls: ["tls://10.82.0.1:4222"]}
sites:
  e: {hosts: [mn2], subnet: 10.86.0.0/24}
`

func TestSettings_SiteNetwork(t *testing.T) {
	env, err := load(t, sited)
	if err != nil {
		t.Fatal(err)
	}
	s := env.Provider.Settings.(*Settings)
	if nw, _ := s.network("east"); nw.Bridge != "bt-m-e" || nw.Subnet != "10.86.0.0/24" || nw.Gateway != "10.86.0.1" {
		t.Errorf("site e's network: %+v, want the site's bridge bt-m-e, subnet and router", nw)
	}
	if a, _ := s.DefaultCallback(); a != "10.82.0.1" {
		t.Errorf("nodes of no site phone home to %q, want the first network of no site's", a)
	}
	for _, c := range []struct{ name, from, to, want string }{
		{"NotTheSitesHost", "hosts: [mn2]", "hosts: [mn9]", "nodes[1].nics[0].network: east is site e's network, and mn2 is not a host of that site: list it in sites.e.hosts"},
		{"SiteWithoutSubnet", "{hosts: [mn2], subnet: 10.86.0.0/24}", "{hosts: [mn2]}", `networks[1].site: "e" is not a site with a network of its own: give it one in sites.e.subnet`},
		{"UnknownSite", "site: e}", "site: w}", `networks[1].site: "w" is not a site with a network of its own`},
		{"SitesHostOffItsNetwork", "hosts: [mn2]", "hosts: [mn1, mn2]", "nodes[0].nics: mn1 is a host of site e, whose nodes are on its own networks: put its primary NIC on one"},
		{"NoLocalRole", "  loadbalancers: {hosts: [lb1], provider: local}\n", "", "networks[1].site: site e's network is made with the local provider's"},
		{"NoNATS", "nats: {urls: [\"tls://10.82.0.1:4222\"]}\n", "", "nats.urls: missing: sites need the NATS cluster"},
		{"OtherSubnet", "site: e}", "site: e, subnet: 10.87.0.0/24}", "networks[1].subnet: 10.87.0.0/24: a network of site e is the site's network, 10.86.0.0/24 (sites.e.subnet): leave subnet out"},
		{"OtherBridge", "site: e}", "site: e, bridge: br0}", `networks[1].bridge: "br0": a network of site e is on the site's bridge, bt-m-e, in its namespace: leave bridge out`},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := strings.Replace(sited, c.from, c.to, 1)
			if body == sited {
				t.Fatalf("%q is not in the file", c.from)
			}
			_, err := load(t, body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %q", err, c.want)
			}
			if err != nil && strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("one mistake, more than one error:\n%v", err)
			}
		})
	}
}

// A site's network and nodes are the site's part of the provider: its
// files under the site's directory, served at the site's URL, its dnsmasq
// and BMCs in the site's namespace; the controller does not serve it.
func TestSites_PartsServeTheirNetworks(t *testing.T) {
	env, err := load(t, sited)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opened, err := Open(context.Background(), env, provider.Options{Dir: dir, BaseURL: "http://10.82.0.1:8077"})
	if err != nil {
		t.Fatal(err)
	}
	p := opened.(*Provider)
	if p.SiteOf("mn2") != "e" || p.SiteOf("mn1") != "" {
		t.Errorf("sites of mn2, mn1: %q, %q", p.SiteOf("mn2"), p.SiteOf("mn1"))
	}
	siteURL := fmt.Sprintf("http://10.86.0.1:%d", env.Callback.Port)
	for _, srv := range p.Servers() {
		want := map[string][3]string{
			"prov": {filepath.Join(dir, "metal", "net", "prov"), "http://10.82.0.1:8077/metal/boot.ipxe", ""},
			"east": {filepath.Join(dir, "sites", "e", "metal", "net", "east"), siteURL + "/metal/boot.ipxe", "booted-m.e"},
		}[srv.Net.Name]
		if got := [3]string{srv.Dir, srv.BootURL, srv.Netns}; got != want {
			t.Errorf("network %s's dnsmasq: %q, want %q", srv.Net.Name, got, want)
		}
	}
	os.MkdirAll(filepath.Join(dir, "bmc"), 0o700)
	for n, ns := range map[string]string{"mn1": "", "mn2": "booted-m.e"} {
		os.WriteFile(filepath.Join(dir, "bmc", n), []byte("pw"), 0o600)
		if b, err := p.BMC(n); err != nil || b.Netns != ns {
			t.Errorf("%s's BMC reached from %q (%v), want %q", n, b.Netns, err, ns)
		}
	}
	if err := p.NetworkUp(context.Background(), "east"); err == nil || !strings.Contains(err.Error(), "network east is site e's: its conductors serve it") {
		t.Errorf("net:create of a site's network outside it: %v", err)
	}
	if err := p.SetOSImage("mn2", BuiltIn); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sites", "e", "metal", "state", "mn2.osimage")); err != nil || p.OSImageOf("mn2") != BuiltIn {
		t.Errorf("mn2's osimage choice is not kept in its site's files: %v", err)
	}
}
