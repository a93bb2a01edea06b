package baremetal

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/osimage"
)

// Settings is the provider.baremetal section of an env file: the networks
// booted serves (DHCP, netboot) and the nodes on them, with their BMCs.
type Settings struct {
	// OSImage is what nodes are installed from: "debian" (the image booted
	// builds, the default) or the name of an imported osimage.
	OSImage  string    `yaml:"osimage"`
	Networks []Network `yaml:"networks"`
	Nodes    []Node    `yaml:"nodes"`
	// Stages bound each stage of a deploy; Retries is how many times a
	// deploy that passes a stage's timeout is tried again before the node
	// is failed.
	Stages  Stages `yaml:"stages"`
	Retries int    `yaml:"retries"`
}

// Network is one network booted serves (xCAT3's network-create).
type Network struct {
	Name string `yaml:"name"`
	// Bridge is the interface the network lives on; booted makes it (with
	// the subnet's first address) when it does not exist.
	Bridge string `yaml:"bridge"`
	Subnet string `yaml:"subnet"`
	// Gateway and Nameservers are handed out only when set.
	Gateway     string   `yaml:"gateway"`
	Nameservers []string `yaml:"nameservers"`
	// Dynamic is a range leased to machines that are not nodes
	// ("10.82.0.100-10.82.0.150"); empty: nodes only.
	Dynamic string `yaml:"dynamic"`
	// Site puts the network in a site (sites.X, with a subnet): it is the
	// site's network (its bridge and subnet, in the site's namespace),
	// served by the site's conductors (dnsmasq, iPXE, seeds from the
	// site's nginx), its nodes powered through them, its default route
	// the site's router. Bridge and subnet may be left out.
	Site string `yaml:"site"`
}

// Node is one machine (xCAT3's create, a Cobbler system).
type Node struct {
	Name string `yaml:"name"`
	// Arch is the machine's architecture (x86_64).
	Arch string `yaml:"arch"`
	// Netboot is how it netboots: pxe (iPXE over HTTP; the default).
	Netboot string `yaml:"netboot"`
	NICs    []NIC  `yaml:"nics"`
	BMC     BMC    `yaml:"bmc"`
	// OSImage is what this node is installed from; empty: the section's
	// osimage (node:deploy ENV NODE OSIMAGE chooses another).
	OSImage string `yaml:"osimage"`
	// CPUs, DiskGB and MemoryMB describe the machine (the lab makes it so;
	// an instance size fits it only if it has as much).
	CPUs     int `yaml:"cpus"`
	DiskGB   int `yaml:"disk_gb"`
	MemoryMB int `yaml:"memory_mb"`
}

// NIC is one of a node's network interfaces.
type NIC struct {
	MAC     string `yaml:"mac"`
	IP      string `yaml:"ip"`
	Name    string `yaml:"name"`
	Network string `yaml:"network"`
	Primary bool   `yaml:"primary"`
}

// BMC is a node's baseboard management controller.
type BMC struct {
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	User    string `yaml:"user"`
	// PasswordFile holds the password; empty: inventory/ENV/bmc/NODE
	// (node:secret writes it). Passwords are never in env files.
	PasswordFile string `yaml:"password_file"`
}

// Stages bounds each stage of a deploy. Zero values take the defaults shown.
type Stages struct {
	// PowerOn: the BMC powers the node on (default 30s).
	PowerOn config.Duration `yaml:"power_on"`
	// DHCP: from power-on to the node's lease (default 2m).
	DHCP config.Duration `yaml:"dhcp"`
	// Installer: from the lease to the installer fetched (default 2m).
	Installer config.Duration `yaml:"installer"`
	// Installed: from the installer fetched to its "installed" report
	// (default 10m).
	Installed config.Duration `yaml:"installed"`
	// FirstBoot: from installed to the phone-home of the installed system
	// (default 5m).
	FirstBoot config.Duration `yaml:"first_boot"`
}

// Primary returns the node's primary NIC.
func (n Node) Primary() NIC {
	for _, c := range n.NICs {
		if c.Primary {
			return c
		}
	}
	if len(n.NICs) > 0 {
		return n.NICs[0]
	}
	return NIC{}
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	ifRE   = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
)

// Decode decodes and validates the provider.baremetal section of env.
func Decode(env *config.Env, d *config.Decoder) any {
	n := env.Provider.Section
	if n == nil {
		d.Add(0, "provider.baremetal", "missing: the baremetal provider needs its networks and nodes")
		return nil
	}
	s := &Settings{}
	d.Decode(n, "provider.baremetal", s)
	if d.Broken("provider.baremetal") {
		return nil
	}
	s.applyDefaults()
	nets := map[string]netip.Prefix{}
	broken := map[string]bool{}
	if len(s.Networks) == 0 {
		d.Add(0, "provider.baremetal.networks", "missing: at least one network (name, bridge, subnet)")
	}
	for i := range s.Networks {
		nw := &s.Networks[i]
		f := fmt.Sprintf("provider.baremetal.networks[%d]", i)
		if nw.Site != "" && !siteNetwork(env, d, f, nw) {
			broken[nw.Name] = true // said once: not again for its fields and nodes
			continue
		}
		if !nameRE.MatchString(nw.Name) {
			d.Add(0, f+".name", "%q: use lower-case letters, digits and '-'", nw.Name)
		}
		if !ifRE.MatchString(nw.Bridge) {
			d.Add(0, f+".bridge", "%q: the name of a bridge or interface (at most 15 characters)", nw.Bridge)
		}
		p, err := netip.ParsePrefix(nw.Subnet)
		if err != nil || !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 29 {
			d.Add(0, f+".subnet", "%q: use an IPv4 subnet from /16 to /29, such as 10.82.0.0/24", nw.Subnet)
		} else {
			nets[nw.Name] = p.Masked()
		}
		if nw.Gateway != "" {
			if a, err := netip.ParseAddr(nw.Gateway); err != nil || !p.Contains(a) {
				d.Add(0, f+".gateway", "%q: an address of the subnet, or leave it out (no default route is handed out then)", nw.Gateway)
			}
		}
		for j, ns := range nw.Nameservers {
			if _, err := netip.ParseAddr(ns); err != nil {
				d.Add(0, fmt.Sprintf("%s.nameservers[%d]", f, j), "%q is not an address", ns)
			}
		}
		if nw.Dynamic != "" {
			lo, hi, ok := strings.Cut(nw.Dynamic, "-")
			a, e1 := netip.ParseAddr(strings.TrimSpace(lo))
			b, e2 := netip.ParseAddr(strings.TrimSpace(hi))
			if !ok || e1 != nil || e2 != nil || !p.Contains(a) || !p.Contains(b) {
				d.Add(0, f+".dynamic", "%q: a range of the subnet, FIRST-LAST", nw.Dynamic)
			}
		}
	}
	seen := map[string]string{}
	if len(s.Nodes) == 0 {
		d.Add(0, "provider.baremetal.nodes", "missing: the nodes (name, nics, bmc)")
	}
	for i, nd := range s.Nodes {
		f := fmt.Sprintf("provider.baremetal.nodes[%d]", i)
		if !nameRE.MatchString(nd.Name) {
			d.Add(0, f+".name", "%q: use lower-case letters, digits and '-'", nd.Name)
		} else if seen[nd.Name] != "" {
			d.Add(0, f+".name", "%s is listed twice", nd.Name)
		}
		seen[nd.Name] = nd.Name
		if nd.Arch != "x86_64" {
			d.Add(0, f+".arch", "%q: booted installs x86_64 nodes", nd.Arch)
		}
		if nd.Netboot != "pxe" {
			d.Add(0, f+".netboot", "%q: use pxe", nd.Netboot)
		}
		if len(nd.NICs) == 0 {
			d.Add(0, f+".nics", "missing: at least its primary NIC (mac, ip, network)")
		}
		for j, c := range nd.NICs {
			cf := fmt.Sprintf("%s.nics[%d]", f, j)
			if _, err := net.ParseMAC(c.MAC); err != nil {
				d.Add(0, cf+".mac", "%q is not a MAC address", c.MAC)
			} else if other := seen["mac "+strings.ToLower(c.MAC)]; other != "" {
				d.Add(0, cf+".mac", "%s is also %s's", c.MAC, other)
			}
			seen["mac "+strings.ToLower(c.MAC)] = nd.Name
			p, ok := nets[c.Network]
			if !ok {
				if !broken[c.Network] {
					d.Add(0, cf+".network", "%q is not one of the networks", c.Network)
				}
			} else if nw, _ := s.network(c.Network); nw.Site != "" {
				role, _ := env.RoleOf(nd.Name)
				if site := env.SiteOf(nd.Name, role); site != nw.Site {
					d.Add(0, cf+".network", "%s is site %s's network, and %s is not a host of that site: list it in sites.%s.hosts (its conductors deploy and power it)", c.Network, nw.Site, nd.Name, nw.Site)
				}
			}
			a, err := netip.ParseAddr(c.IP)
			switch {
			case err != nil:
				d.Add(0, cf+".ip", "%q is not an address", c.IP)
			case ok && !p.Contains(a):
				d.Add(0, cf+".ip", "%s is not in network %s (%s)", c.IP, c.Network, p)
			case seen["ip "+c.IP] != "":
				d.Add(0, cf+".ip", "%s is also %s's", c.IP, seen["ip "+c.IP])
			}
			seen["ip "+c.IP] = nd.Name
		}
		role, _ := env.RoleOf(nd.Name)
		if site := env.SiteOf(nd.Name, role); site != "" && s.hasSite(site) {
			if nw, ok := s.network(nd.Primary().Network); ok && nw.Site != site {
				d.Add(0, f+".nics", "%s is a host of site %s, whose nodes are on its own networks: put its primary NIC on one (a network with site: %s)", nd.Name, site, site)
			}
		}
		if nd.OSImage != "" {
			if err := osimage.CheckName(nd.OSImage); err != nil {
				d.Add(0, f+".osimage", "%v", err)
			}
		}
		if nd.BMC.Address == "" {
			d.Add(0, f+".bmc.address", "missing: the address of %s's BMC", nd.Name)
		}
		if nd.BMC.Port < 1 || nd.BMC.Port > 65535 {
			d.Add(0, f+".bmc.port", "%d is not a UDP port", nd.BMC.Port)
		}
		if nd.BMC.User == "" {
			d.Add(0, f+".bmc.user", "missing: the BMC user booted logs in as")
		}
	}
	if err := osimage.CheckName(s.OSImage); err != nil {
		d.Add(0, "provider.baremetal.osimage", "%v", err)
	}
	if s.Retries < 0 || s.Retries > 10 {
		d.Add(0, "provider.baremetal.retries", "%d: use 0 to 10", s.Retries)
	}
	return s
}

// siteNetwork checks network nw of a site and fills in what the site
// gives it: its bridge, its subnet, its gateway (the site's router); it
// reports whether the site has a network to give.
func siteNetwork(env *config.Env, d *config.Decoder, f string, nw *Network) bool {
	st := env.Sites[nw.Site]
	if st == nil || st.Subnet == "" {
		d.Add(0, f+".site", "%q is not a site with a network of its own: give it one in sites.%s.subnet (the network is the site's)", nw.Site, nw.Site)
		return false
	}
	local := false
	for _, r := range env.Roles {
		local = local || (r != nil && r.Provider == "local")
	}
	if !local {
		d.Add(0, f+".site", "site %s's network is made with the local provider's (its router, a namespace routed from provider.local.subnet): give a role provider: local (the load balancers, say)", nw.Site)
	}
	if nw.Subnet == "" {
		nw.Subnet = st.Subnet
	} else if a, err := netip.ParsePrefix(nw.Subnet); err == nil {
		if b, err := netip.ParsePrefix(st.Subnet); err == nil && a.Masked() != b.Masked() {
			d.Add(0, f+".subnet", "%s: a network of site %s is the site's network, %s (sites.%s.subnet): leave subnet out", nw.Subnet, nw.Site, st.Subnet, nw.Site)
			nw.Subnet = st.Subnet // (the rest is checked against the site's: one mistake, one error)
		}
	}
	br := bridge.SiteBridge(env.Name, nw.Site)
	if nw.Bridge == "" {
		nw.Bridge = br
	} else if nw.Bridge != br {
		d.Add(0, f+".bridge", "%q: a network of site %s is on the site's bridge, %s, in its namespace: leave bridge out", nw.Bridge, nw.Site, br)
	}
	if nw.Gateway == "" { // the site's router routes its network
		if gw, err := config.GatewayOf(st.Subnet); err == nil {
			nw.Gateway = gw.Addr().String()
		}
	}
	return true
}

func (s *Settings) applyDefaults() {
	if s.OSImage == "" {
		s.OSImage = "debian"
	}
	def := func(d *config.Duration, v time.Duration) {
		if *d == 0 {
			*d = config.Duration(v)
		}
	}
	def(&s.Stages.PowerOn, 30*time.Second)
	def(&s.Stages.DHCP, 2*time.Minute)
	def(&s.Stages.Installer, 2*time.Minute)
	def(&s.Stages.Installed, 10*time.Minute)
	def(&s.Stages.FirstBoot, 5*time.Minute)
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Arch == "" {
			n.Arch = "x86_64"
		}
		if n.Netboot == "" {
			n.Netboot = "pxe"
		}
		if n.BMC.Port == 0 {
			n.BMC.Port = 623
		}
		if n.DiskGB == 0 {
			n.DiskGB = 2
		}
		if n.MemoryMB == 0 {
			n.MemoryMB = 512
		}
		if n.CPUs == 0 {
			n.CPUs = 1
		}
	}
}

// network returns the network named name.
func (s *Settings) network(name string) (Network, bool) {
	for _, n := range s.Networks {
		if n.Name == name {
			return n, true
		}
	}
	return Network{}, false
}

// hasSite reports whether site has networks.
func (s *Settings) hasSite(site string) bool {
	for _, nw := range s.Networks {
		if nw.Site == site {
			return true
		}
	}
	return false
}

// ofSite returns the settings of site's part: its networks and the nodes
// on them.
func (s *Settings) ofSite(site string) *Settings {
	c := *s
	c.Networks, c.Nodes = nil, nil
	for _, nw := range s.Networks {
		if nw.Site == site {
			c.Networks = append(c.Networks, nw)
		}
	}
	for _, n := range s.Nodes {
		if nw, ok := s.network(n.Primary().Network); ok && nw.Site == site {
			c.Nodes = append(c.Nodes, n)
		}
	}
	return &c
}

// node returns the node named name.
func (s *Settings) node(name string) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Gateway returns the first network's server address (the bridge's).
func (s *Settings) server(nw Network) netip.Prefix {
	p, _ := netip.ParsePrefix(nw.Subnet)
	p = p.Masked()
	return netip.PrefixFrom(p.Addr().Next(), p.Bits())
}

// DefaultCallback: nodes phone home to their first network's server (of
// the first network of no site: a site's nodes phone home to their site).
func (s *Settings) DefaultCallback() (string, bool) {
	for _, nw := range s.Networks {
		if nw.Site == "" {
			return s.server(nw).Addr().String(), true
		}
	}
	return "", true
}
