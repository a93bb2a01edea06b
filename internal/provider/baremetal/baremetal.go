// Package baremetal provides machines booted installs over the network and
// powers through their BMC (xCAT3's deploy and power, Metaleuca's
// run-instances): a node's deploy turns netboot on for that node alone
// (its iPXE script installs it), sets its boot device to PXE over IPMI and
// powers it on; the installer writes the osimage to its disk, puts the
// node's seed (name, network, deploy key, phone-home script, this
// provisioning's enrollment token) into it and reports "installed", upon
// which netboot is turned off for that node (its script boots the disk, its
// BMC's boot device is the disk): netboot happens once. The node then boots
// its disk and phones home like any host.
//
// Networks are served by dnsmasq (package netboot) on their bridge; the
// controller's nginx serves /metal/: the iPXE scripts, the osimages, and
// each node's seed to that node's address alone.
package baremetal

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"booted/internal/atomicfile"
	"booted/internal/bmc"
	"booted/internal/bridge"
	"booted/internal/config"
	"booted/internal/fanout"
	"booted/internal/netboot"
	"booted/internal/osimage"
	"booted/internal/pkgs"
	"booted/internal/provider"
	"booted/internal/provider/qemu"
)

// Interface guards: what bare-metal nodes can do.
var (
	_ provider.Provider   = (*Provider)(nil)
	_ provider.Power      = (*Provider)(nil)
	_ provider.Deleter    = (*Provider)(nil)
	_ provider.Console    = (*Provider)(nil)
	_ provider.Netboot    = (*Provider)(nil)
	_ provider.Preparer   = (*Provider)(nil)
	_ provider.Teardowner = (*Provider)(nil)
	_ provider.Switch     = (*Provider)(nil)
	_ provider.Stages     = (*Provider)(nil)
)

// Needs are the commands the provider runs, and their Debian packages.
var Needs = pkgs.Merge(netboot.Needs, bmc.Needs, osimage.Needs, osimage.ISONeeds, qemu.Needs, pkgs.Need{"ip": "iproute2"})

// Provider deploys and powers the nodes of one environment.
type Provider struct {
	env *config.Env
	set *Settings
	// dir is inventory/ENV/metal: served at BaseURL/metal/.
	dir     string
	bmcDir  string // inventory/ENV/bmc: the BMC passwords
	console string // inventory/ENV/console
	baseURL string
	root    string // the project: kickstart/ templates
	failed  string // the failure report's URL
	ports   []int  // the services' ports (a kickstart's firewall opens them)
	log     io.Writer
	// BMCTimeout bounds one IPMI call (default 8s).
	BMCTimeout time.Duration
	osimages   string // inventory/ENV/osimages

	// The networks of a site (networks[].site) are served from the site's
	// router: each site has a part of this provider of its own (its
	// networks and nodes, its files under inventory/ENV/sites/SITE/metal,
	// served by the site's nginx at the site's URL, its dnsmasq and BMCs
	// reached in the site's namespace). The part a node or network
	// belongs to does what concerns it; sites is nil in a part.
	site  string
	netns string
	sites map[string]*Provider
}

// Open returns the baremetal provider of env, installing what it needs.
func Open(ctx context.Context, env *config.Env, o provider.Options) (provider.Provider, error) {
	if o.Install != nil {
		if err := o.Install(ctx, Needs); err != nil {
			return nil, err
		}
	}
	set, ok := env.Provider.Settings.(*Settings)
	if !ok {
		return nil, fmt.Errorf("%s: provider.baremetal is missing", env.Path)
	}
	p := &Provider{env: env, set: set, dir: filepath.Join(o.Dir, "metal"), bmcDir: filepath.Join(o.Dir, "bmc"),
		console: filepath.Join(o.Dir, "console"), baseURL: o.BaseURL, root: o.Root, failed: o.FailedURL, ports: o.Ports, log: o.Logger(),
		BMCTimeout: 8 * time.Second, osimages: filepath.Join(o.Dir, "osimages")}
	for _, nw := range set.Networks {
		if nw.Site == "" || p.sites[nw.Site] != nil {
			continue
		}
		url, ok := env.SiteURL(nw.Site)
		if !ok {
			return nil, fmt.Errorf("%s: provider.baremetal.networks: network %s is site %s's, which has no network of its own and conductors (sites.%s.subnet, nats.urls)", env.Path, nw.Name, nw.Site, nw.Site)
		}
		part := *p
		part.site, part.netns, part.sites = nw.Site, bridge.SiteNetns(env.Name, nw.Site), nil
		part.dir, part.baseURL = filepath.Join(o.Dir, "sites", nw.Site, "metal"), url
		part.set = set.ofSite(nw.Site)
		if p.sites == nil {
			p.sites = map[string]*Provider{}
		}
		p.sites[nw.Site] = &part
	}
	return p, nil
}

// of returns the part of the provider node name belongs to: its
// network's site's, or p.
func (p *Provider) of(name string) *Provider {
	if n, ok := p.set.node(name); ok {
		return p.ofNetwork(n.Primary().Network)
	}
	return p
}

// ofNetwork returns the part of the provider network name belongs to.
func (p *Provider) ofNetwork(name string) *Provider {
	if nw, ok := p.set.network(name); ok && p.sites[nw.Site] != nil {
		return p.sites[nw.Site]
	}
	return p
}

// here returns the part this process serves: a site's when it runs in
// the site's network (a conductor), else p (the networks of no site).
// (nil: another site's router, one without networks of this provider).
func (p *Provider) here() *Provider {
	if p.site != "" {
		return p // a part, asked by its site's conductor
	}
	for _, part := range p.sites {
		if bridge.InNetns(part.netns) {
			return part
		}
	}
	for site := range p.env.Sites {
		if bridge.InNetns(bridge.SiteNetns(p.env.Name, site)) {
			return nil
		}
	}
	return p
}

// SiteOf returns the site node name is served by ("": none).
func (p *Provider) SiteOf(name string) string { return p.of(name).site }

// Settings returns the env file's section.
func (p *Provider) Settings() *Settings { return p.set }

// BMCPasswordFile is where node name's BMC password is kept, unless the env
// file names another file.
func (p *Provider) BMCPasswordFile(name string) string {
	if n, ok := p.set.node(name); ok && n.BMC.PasswordFile != "" {
		return n.BMC.PasswordFile
	}
	return filepath.Join(p.bmcDir, name)
}

// Listed says whether node name is listed in the env file.
func (p *Provider) Listed(name string) bool { _, ok := p.set.node(name); return ok }

// BMC returns node name's BMC.
func (p *Provider) BMC(name string) (bmc.BMC, error) {
	n, ok := p.set.node(name)
	if !ok {
		return bmc.BMC{}, fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s: %w", name, p.env.Path, provider.ErrNoInstance)
	}
	pw, err := os.ReadFile(p.BMCPasswordFile(name))
	if err != nil {
		return bmc.BMC{}, fmt.Errorf("node %s: no BMC password (%v): set it with node:secret %s %s", name, err, p.env.Name, name)
	}
	return bmc.BMC{Node: name, Addr: n.BMC.Address, Port: n.BMC.Port, User: n.BMC.User,
		Password: strings.TrimSpace(string(pw)), Timeout: p.BMCTimeout, Netns: p.of(name).netns}, nil
}

func (p *Provider) state(name, what string) string {
	return filepath.Join(p.dir, "state", name+"."+what)
}

func (p *Provider) stamp(name, what string) error {
	if err := os.MkdirAll(filepath.Join(p.dir, "state"), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p.state(name, what), []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
}

func (p *Provider) stamped(name, what string) time.Time {
	b, err := os.ReadFile(p.state(name, what))
	if err != nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t
}

func (p *Provider) instance(n Node, power string) provider.Instance {
	st := provider.Off
	if power == bmc.On {
		st = provider.Running
	}
	nic := n.Primary()
	return provider.Instance{Name: n.Name, ID: fmt.Sprintf("%s (BMC %s:%d)", n.Name, n.BMC.Address, n.BMC.Port), Addr: nic.IP, MAC: strings.ToLower(nic.MAC), State: st}
}

// Build checks the node is listed and its BMC answers, and takes the
// machine into the environment (node:create): it is listed from then on,
// until Delete gives it back.
func (p *Provider) Build(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	if q := p.of(s.Name); q != p {
		return q.Build(ctx, s)
	}
	n, ok := p.set.node(s.Name)
	if !ok {
		return provider.Instance{}, fmt.Errorf("node %s is not listed in provider.baremetal.nodes of %s: %w", s.Name, p.env.Path, provider.ErrNoInstance)
	}
	b, err := p.BMC(s.Name)
	if err != nil {
		return provider.Instance{}, err
	}
	st, err := b.Status(ctx)
	if err != nil {
		return provider.Instance{}, err
	}
	if p.stamped(s.Name, "created").IsZero() {
		if err := p.stamp(s.Name, "created"); err != nil {
			return provider.Instance{}, err
		}
	}
	return p.instance(n, st), nil
}

// created says whether node name was taken into the environment (Build).
// (A node deployed before booted kept this mark has a power-on one.)
func (p *Provider) created(name string) bool {
	if q := p.of(name); q != p {
		return q.created(name)
	}
	return !p.stamped(name, "created").IsZero() || !p.stamped(name, "poweron").IsZero()
}

// Start deploys the node: its seed, its iPXE script (install, unless it
// is installed: then its disk), its BMC's boot device, power on (or a
// power cycle if it is on).
func (p *Provider) Start(ctx context.Context, s provider.Spec) (provider.Instance, error) {
	if q := p.of(s.Name); q != p {
		return q.Start(ctx, s)
	}
	in, err := p.Build(ctx, s)
	if err != nil {
		return in, err
	}
	n, _ := p.set.node(s.Name)
	if err := p.Prepare(ctx); err != nil {
		return in, err
	}
	img, err := p.ensureImage(ctx, p.OSImageOf(s.Name))
	if err != nil {
		return in, fmt.Errorf("node %s: %w", s.Name, err)
	}
	if err := p.writeSeed(n, s); err != nil {
		return in, fmt.Errorf("node %s: seed: %w", s.Name, err)
	}
	if err := p.writeInstallFiles(n, s, img); err != nil {
		return in, fmt.Errorf("node %s: %s files: %w", s.Name, img.Method, err)
	}
	installed := !p.stamped(s.Name, "installed").IsZero()
	if err := p.setNetboot(ctx, n, !installed); err != nil {
		return in, err
	}
	b, _ := p.BMC(s.Name)
	os.Remove(p.state(s.Name, "installed-report"))
	if err := p.stamp(s.Name, "poweron"); err != nil {
		return in, err
	}
	if in.State == provider.Running {
		err = b.Cycle(ctx)
	} else {
		err = b.PowerOn(ctx)
	}
	if err != nil {
		return in, err
	}
	if err := p.waitOn(ctx, b); err != nil {
		return in, err
	}
	p.stamp(s.Name, "powered")
	in.State = provider.Running
	return in, nil
}

// waitOn waits (up to the power-on stage's timeout) until the BMC says
// the node is on: a power cycle is off, then on.
func (p *Provider) waitOn(ctx context.Context, b bmc.BMC) error {
	deadline := time.Now().Add(p.set.Stages.PowerOn.D())
	for {
		st, err := b.Status(ctx)
		if err != nil {
			return err
		}
		if st == bmc.On {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: BMC %s:%d: still %s %v after powering it on", b.Node, b.Addr, b.Port, st, p.set.Stages.PowerOn.D())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// setNetboot writes node n's iPXE script (install, or boot the disk) and
// sets its BMC's boot device to match.
func (p *Provider) setNetboot(ctx context.Context, n Node, install bool) error {
	script := netboot.DiskScript(n.Name)
	dev := "disk"
	if install {
		img, err := p.imageInfo(p.OSImageOf(n.Name))
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		kernel, initrd, args := p.installer(n, img)
		script = netboot.InstallScript(n.Name, kernel, initrd, args)
		dev = "pxe"
	}
	if err := atomicfile.Write(filepath.Join(p.dir, "node", netboot.ScriptName(n.Primary().MAC)), script, 0o600); err != nil {
		return err
	}
	b, err := p.BMC(n.Name)
	if err != nil {
		return err
	}
	return b.BootDev(ctx, dev)
}

// writeSeed writes the tar the installer puts into the node's root
// filesystem (served to the node's address alone).
func (p *Provider) writeSeed(n Node, s provider.Spec) error {
	nic := n.Primary()
	nw, _ := p.set.network(nic.Network)
	pfx, _ := netip.ParsePrefix(nw.Subnet)
	gw := nw.Gateway
	if gw == "" {
		gw = p.set.server(nw).Addr().String()
	}
	files := qemu.SeedFiles(s, strings.ToLower(nic.MAC), nic.IP, pfx.Bits(), gw)
	if nw.Gateway == "" { // no default route unless the network says so
		files["etc/systemd/network/10-booted.network"] = fmt.Sprintf("[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s/%d\n", strings.ToLower(nic.MAC), nic.IP, pfx.Bits())
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, f := range names {
		for d := filepath.Dir(f); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var ds []string
	for d := range dirs {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for _, d := range ds {
		mode := int64(0o755)
		if d == "root" || d == "root/.ssh" {
			mode = 0o700
		}
		tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode})
	}
	for _, f := range names {
		mode := int64(0o644)
		switch {
		case strings.HasSuffix(f, "phone-home.sh"):
			mode = 0o700
		case strings.HasSuffix(f, "authorized_keys"), strings.HasSuffix(f, "enroll-token"):
			mode = 0o600
		}
		tw.WriteHeader(&tar.Header{Name: f, Mode: mode, Size: int64(len(files[f]))})
		tw.Write([]byte(files[f]))
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(p.dir, "seed", n.Name+".tar"), b.Bytes(), 0o600)
}

// IsInstalled says whether node name is installed (netboot is off for it).
func (p *Provider) IsInstalled(name string) bool {
	return !p.of(name).stamped(name, "installed").IsZero()
}

// Installed turns netboot off for node name: it boots its disk from now on.
func (p *Provider) Installed(ctx context.Context, name string) error {
	if q := p.of(name); q != p {
		return q.Installed(ctx, name)
	}
	n, ok := p.set.node(name)
	if !ok {
		return fmt.Errorf("node %s: %w", name, provider.ErrNoInstance)
	}
	if err := p.stamp(name, "installed"); err != nil {
		return err
	}
	return p.setNetboot(ctx, n, false)
}

// Stop powers the node off; one never built (or deleted) is not the
// environment's: ErrNoInstance.
func (p *Provider) Stop(ctx context.Context, name string) error {
	if !p.created(name) {
		return fmt.Errorf("node %s: not created in %s (node:create, image:start): %w", name, p.env.Name, provider.ErrNoInstance)
	}
	return p.PowerOff(ctx, name)
}

// PowerOff powers node name off through its BMC (power:off: any listed node).
func (p *Provider) PowerOff(ctx context.Context, name string) error {
	b, err := p.BMC(name)
	if err != nil {
		return err
	}
	return b.PowerOff(ctx)
}

// Delete powers the node off and forgets its install: the next deploy
// installs it again (it goes back to the pool).
func (p *Provider) Delete(ctx context.Context, name string) error {
	if q := p.of(name); q != p {
		return q.Delete(ctx, name)
	}
	n, ok := p.set.node(name)
	if !ok || !p.created(name) {
		return nil // not the environment's: its power is left alone
	}
	if b, err := p.BMC(name); err == nil {
		if err := b.PowerOff(ctx); errors.Is(err, bmc.ErrUnreachable) {
			fmt.Fprintf(p.log, "%v: not powered off; its install is forgotten\n", err)
		} else if err != nil {
			return err
		}
	}
	os.RemoveAll(filepath.Join(p.dir, "ks", name))
	for _, w := range []string{"installed", "poweron", "powered", "installed-report", "osimage", "created"} {
		os.Remove(p.state(name, w))
	}
	os.Remove(filepath.Join(p.dir, "seed", name+".tar"))
	os.Remove(filepath.Join(p.dir, "node", netboot.ScriptName(n.Primary().MAC)))
	return nil
}

// Locate says the node's network (its primary NIC's), that network's
// bridge, and its BMC's address.
func (p *Provider) Locate(name string) (provider.Location, error) {
	n, ok := p.set.node(name)
	if !ok {
		return provider.Location{}, fmt.Errorf("node %s: %w", name, provider.ErrNoInstance)
	}
	loc := provider.Location{Network: n.Primary().Network, Port: n.Primary().MAC}
	if nw, ok := p.set.network(loc.Network); ok {
		loc.Bridge = nw.Bridge
	}
	if n.BMC.Address != "" {
		loc.BMC = net.JoinHostPort(n.BMC.Address, strconv.Itoa(n.BMC.Port))
	}
	return loc, nil
}

// List returns the nodes built (created and not deleted) with their power
// state (asked of the BMC; a node whose BMC does not answer is listed as
// off).
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	var nodes []Node
	for _, n := range p.set.Nodes {
		if p.created(n.Name) {
			nodes = append(nodes, n)
		}
	}
	return fanout.Map(ctx, nodes, 0, func(ctx context.Context, n Node) provider.Instance {
		st := bmc.Off
		if b, err := p.BMC(n.Name); err == nil {
			st, _ = b.Status(ctx)
		}
		return p.instance(n, st)
	}), nil
}

// ConsoleLog is the node's serial console log, where one is kept (the lab's
// machines write theirs there).
func (p *Provider) ConsoleLog(name string) string { return filepath.Join(p.console, name+".log") }

// PowerOn, PowerOff, PowerCycle and PowerStatus switch the node's power
// through its BMC.
func (p *Provider) PowerOn(ctx context.Context, name string) error {
	b, err := p.BMC(name)
	if err != nil {
		return err
	}
	return b.PowerOn(ctx)
}

func (p *Provider) PowerCycle(ctx context.Context, name string) error {
	b, err := p.BMC(name)
	if err != nil {
		return err
	}
	return b.Cycle(ctx)
}

func (p *Provider) PowerStatus(ctx context.Context, name string) (string, error) {
	b, err := p.BMC(name)
	if err != nil {
		return "", err
	}
	return b.Status(ctx)
}

// Servers returns the dnsmasq of each network.
func (p *Provider) Servers() []*netboot.Server {
	var out []*netboot.Server
	for _, nw := range p.set.Networks {
		pfx, _ := netip.ParsePrefix(nw.Subnet)
		srv := netboot.Network{Name: nw.Name, Bridge: nw.Bridge, Subnet: pfx.Masked(), Server: p.set.server(nw).Addr()}
		if nw.Gateway != "" {
			srv.Gateway, _ = netip.ParseAddr(nw.Gateway)
		}
		for _, d := range nw.Nameservers {
			a, _ := netip.ParseAddr(d)
			srv.DNS = append(srv.DNS, a)
		}
		if nw.Dynamic != "" {
			srv.Dynamic = strings.ReplaceAll(nw.Dynamic, "-", ",")
		}
		q := p.ofNetwork(nw.Name)
		s := &netboot.Server{Net: srv, Dir: filepath.Join(q.dir, "net", nw.Name), BootURL: q.baseURL + "/metal/boot.ipxe", Netns: q.netns}
		for _, n := range p.set.Nodes {
			for _, c := range n.NICs {
				if c.Network == nw.Name {
					a, _ := netip.ParseAddr(c.IP)
					s.Nodes = append(s.Nodes, netboot.Node{Name: n.Name, MAC: strings.ToLower(c.MAC), Addr: a})
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// Prepare makes the networks (bridge, dnsmasq) and the served files: the
// first iPXE script, each node's seed access, the imported osimages (the
// one booted builds is made at the first deploy that needs it).
//
// Each part prepares its own: a conductor (in its site's network) its
// site's; the controller the networks of no site.
func (p *Provider) Prepare(ctx context.Context) error {
	if q := p.here(); q == nil {
		return nil
	} else if q != p {
		return q.Prepare(ctx)
	}
	if err := atomicfile.Write(filepath.Join(p.dir, "boot.ipxe"), netboot.BootScript(p.baseURL+"/metal/node/"), 0o600); err != nil {
		return err
	}
	imported, err := osimage.List(p.OSImagesDir())
	if err != nil {
		return err
	}
	for _, in := range imported {
		if _, err := p.ensureImage(ctx, in.Name); err != nil {
			return err
		}
	}
	if err := p.writeSeedAccess(); err != nil {
		return err
	}
	for _, nw := range p.set.Networks {
		if nw.Site != p.site {
			continue // another part's
		}
		if err := p.NetworkUp(ctx, nw.Name); err != nil {
			return err
		}
	}
	return nil
}

// NetworkUp makes network name's bridge and starts (or reloads) its
// dnsmasq (net:create).
func (p *Provider) NetworkUp(ctx context.Context, name string) error {
	nw, srv, err := p.network(name)
	if err != nil {
		return err
	}
	if q := p.ofNetwork(name); q.netns != "" && !bridge.InNetns(q.netns) {
		// A site's network is on its bridge, in its namespace (made with
		// the site's network); only its conductors serve it.
		return fmt.Errorf("network %s is site %s's: its conductors serve it, from the site's network (conductor:run %s %s)", name, q.site, p.env.Name, q.site)
	}
	if err := p.ensureBridge(ctx, nw); err != nil {
		return err
	}
	return srv.Ensure(ctx)
}

// NetworkDown stops network name's dnsmasq and removes its bridge
// (net:del).
func (p *Provider) NetworkDown(ctx context.Context, name string) error {
	nw, srv, err := p.network(name)
	if err != nil {
		return err
	}
	if nw.Site != "" { // the site's bridge goes with its network
		return srv.Stop(ctx)
	}
	return errors.Join(srv.Stop(ctx), bridge.Remove(ctx, nw.Bridge))
}

// NodesOn returns the nodes with a NIC on network name.
func (p *Provider) NodesOn(name string) []string {
	var out []string
	for _, n := range p.set.Nodes {
		for _, c := range n.NICs {
			if c.Network == name {
				out = append(out, n.Name)
				break
			}
		}
	}
	return out
}

func (p *Provider) network(name string) (Network, *netboot.Server, error) {
	for i, nw := range p.set.Networks {
		if nw.Name == name {
			return nw, p.Servers()[i], nil
		}
	}
	var names []string
	for _, nw := range p.set.Networks {
		names = append(names, nw.Name)
	}
	return Network{}, nil, fmt.Errorf("network %q is not in provider.baremetal.networks of %s (it has: %s)", name, p.env.Path, strings.Join(names, ", "))
}

// ensureBridge makes nw's bridge (with the subnet's first address and a
// unique local IPv6 address for the router advertisement iPXE needs) when
// it does not exist.
func (p *Provider) ensureBridge(ctx context.Context, nw Network) error {
	gw := p.set.server(nw)
	// A site's bridge is made with its network (and bridge.Ensure, which
	// reads this machine's /sys, would not see it from the site's).
	if nw.Site == "" {
		if err := bridge.Ensure(ctx, nw.Bridge, gw, "provider.baremetal.networks."+nw.Name+".subnet"); err != nil {
			return err
		}
	}
	a := gw.Addr().As4()
	ula := fmt.Sprintf("fd%02x:%02x%02x::1/64", a[1], a[2], a[3])
	bridge.IP(ctx, "", "-6", "addr", "replace", ula, "dev", nw.Bridge)
	return nil
}

// writeSeedAccess writes the nginx locations that serve each node's seed
// to that node's address alone (the controller includes the file).
func (p *Provider) writeSeedAccess() error {
	var b strings.Builder
	b.WriteString("# Written by booted: each node's seed (its enrollment token) to its own address alone.\n")
	for _, n := range p.set.Nodes {
		if p.of(n.Name) != p {
			continue // served by its site
		}
		fmt.Fprintf(&b, "location = /metal/seed/%s.tar {\n\tallow %s;\n\tdeny all;\n\talias %s;\n}\n", n.Name, n.Primary().IP, filepath.Join(p.dir, "seed", n.Name+".tar"))
		fmt.Fprintf(&b, "location /metal/ks/%s/ {\n\tallow %s;\n\tdeny all;\n\talias %s/;\n}\n", n.Name, n.Primary().IP, filepath.Join(p.dir, "ks", n.Name))
	}
	return atomicfile.Write(filepath.Join(p.dir, "seeds.conf"), []byte(b.String()), 0o600)
}

// Teardown stops every network's dnsmasq and removes the bridges booted
// made, after powering the nodes off.
func (p *Provider) Teardown(ctx context.Context) error {
	var errs []error
	for _, n := range p.set.Nodes {
		if b, err := p.BMC(n.Name); err == nil {
			if err := b.PowerOff(ctx); err != nil && !errors.Is(err, bmc.ErrUnreachable) {
				errs = append(errs, err)
			}
		}
	}
	for _, s := range p.Servers() {
		errs = append(errs, s.Stop(ctx))
	}
	for _, nw := range p.set.Networks {
		if nw.Site == "" { // a site's bridge goes with its network
			errs = append(errs, bridge.Remove(ctx, nw.Bridge))
		}
	}
	return errors.Join(errs...)
}

// Stage names, in order.
const (
	StagePowerOn   = "power-on"
	StageDHCP      = "dhcp-lease"
	StageInstaller = "installer-fetched"
	StageInstalled = "installed"
	StageFirstBoot = "first-boot"
)

// Stage returns the last stage node name reached since since, and the one
// it waits for with its deadline.
func (p *Provider) Stage(ctx context.Context, name string, since time.Time) (string, time.Time, string, time.Time) {
	if q := p.of(name); q != p {
		return q.Stage(ctx, name, since)
	}
	n, ok := p.set.node(name)
	if !ok {
		return "", time.Time{}, "", time.Time{}
	}
	st := p.set.Stages
	reached, at := "", since
	step := func(stage string, t time.Time) bool {
		if t.IsZero() || t.Before(since) {
			return false
		}
		reached, at = stage, t
		return true
	}
	if !step(StagePowerOn, p.stamped(name, "powered")) {
		return reached, at, StagePowerOn, since.Add(st.PowerOn.D())
	}
	installed := p.stamped(name, "installed")
	if !installed.IsZero() && !installed.Before(since) {
		step(StageInstalled, installed)
		return reached, at, StageFirstBoot, installed.Add(st.FirstBoot.D())
	}
	if p.stamped(name, "installed").IsZero() || p.stamped(name, "installed").Before(since) {
		var lease time.Time
		for _, s := range p.Servers() {
			if t := s.Lease(n.Primary().MAC); t.After(lease) {
				lease = t
			}
		}
		// dnsmasq logs whole seconds: a lease in the second of power-on counts.
		if !step(StageDHCP, maxTime(lease, since, lease.Add(time.Second).After(since))) {
			return reached, at, StageDHCP, at.Add(st.DHCP.D())
		}
		// nginx logs whole seconds too.
		if f := p.fetched(n, since); !step(StageInstaller, maxTime(f, since, true)) {
			return reached, at, StageInstaller, at.Add(st.Installer.D())
		}
		return reached, at, StageInstalled, at.Add(st.Installed.D())
	}
	return reached, at, StageFirstBoot, at.Add(st.FirstBoot.D())
}

func maxTime(t, since time.Time, ok bool) time.Time {
	if !ok || t.IsZero() {
		return time.Time{}
	}
	if t.Before(since) {
		return since
	}
	return t
}

// fetched returns when the node fetched its installer since since, from
// the controller's /metal/ access log.
func (p *Provider) fetched(n Node, since time.Time) time.Time {
	img, err := p.imageInfo(p.OSImageOf(n.Name))
	if err != nil {
		return time.Time{}
	}
	_, installer, _ := p.installer(n, img)
	installer = strings.TrimPrefix(installer, p.baseURL)
	b, err := os.ReadFile(filepath.Join(p.dir, "access.log"))
	if err != nil {
		return time.Time{}
	}
	var last time.Time
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, `"remote":"`+n.Primary().IP+`"`) || !strings.Contains(l, installer) {
			continue
		}
		i := strings.Index(l, `"time":"`)
		if i < 0 {
			continue
		}
		t, err := time.Parse(time.RFC3339, l[i+8:i+8+25])
		if err == nil && !t.Add(time.Second).Before(since) {
			last = t
		}
	}
	return last
}

// Retries is how many times a late deploy is tried again.
func (p *Provider) Retries() int { return p.set.Retries }
