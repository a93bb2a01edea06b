package baremetal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"booted/internal/config"
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
