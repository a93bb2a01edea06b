package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"booted/internal/bridge"
	"booted/internal/nftables"
)

// A site with a subnet of its own (sites.X.subnet) is a network behind a
// router of its own, as a site's machine would be: a network namespace
// (booted-ENV.SITE) owns the site's bridge, with the subnet's first
// address, and one uplink to this machine (a veth, bu…) that its default
// route takes. This machine routes the site's subnet through the uplink.
// The site's conductors run in that namespace: they reach their site's
// hosts on its bridge, and this machine (NATS, the callbacks' nginx)
// through the uplink, and make their site's hosts there; the site's
// router itself (its conductors) is not forwarded to other sites, its
// hosts are.

// siteUplink is the uplink's name inside a site's namespace.
const siteUplink = "up0"

// ensureLan makes the network of l's hosts: the environment's bridge, or
// a site's namespace, bridge and uplink; then the routing between them.
// A conductor (in the site's namespace) finds its site's network made by
// the controller and changes nothing outside it.
func (p *Provider) ensureLan(ctx context.Context, l lan) error {
	if l.ns != "" && siteReady(ctx, l) {
		return nil
	}
	if l.ns != "" && bridge.InNetns(l.ns) { // its uplink and routes are made from the other end
		return fmt.Errorf("the network of site %s (namespace %s) is not made: start the environment from its controller first (env:startAll %s, or nginx:restart %s)", l.site, l.ns, p.env, p.env)
	}
	return p.ensureBridges(ctx)
}

// ensureBridges creates the environment's bridge and its sites' networks
// and, with sites, the routing between them (on this machine: the
// controller's side).
func (p *Provider) ensureBridges(ctx context.Context) error {
	if err := bridge.Ensure(ctx, p.bridge, p.gateway, "provider.local.subnet"); err != nil {
		return err
	}
	if len(p.sites) == 0 {
		return nil
	}
	for _, l := range p.lans()[1:] {
		if err := p.ensureSite(ctx, l); err != nil {
			return err
		}
	}
	return p.routeSites(ctx)
}

// siteReady reports whether l's namespace has its bridge and uplink.
func siteReady(ctx context.Context, l lan) bool {
	if bridge.NetnsInode(l.ns) == 0 {
		return false
	}
	out, err := exec.CommandContext(ctx, "ip", "-n", l.ns, "-o", "link", "show").Output()
	if err != nil {
		return false
	}
	s := string(out)
	return strings.Contains(s, ": "+l.bridge+":") && strings.Contains(s, ": "+siteUplink+"@")
}

// ensureSite makes site network l: its namespace, with forwarding on; its
// bridge (the gateway address, an address of its own); its uplink, and
// the routes both ways.
func (p *Provider) ensureSite(ctx context.Context, l lan) error {
	field := "sites." + l.site + ".subnet"
	if !siteReady(ctx, l) {
		unlock, err := bridge.LockFile("/run/booted-local.lock")
		if err != nil {
			return err
		}
		defer unlock()
		if err := bridge.CheckSubnet(ctx, l.subnet, l.uplink, field); err != nil {
			return err
		}
		if bridge.NetnsInode(l.ns) == 0 {
			if err := bridge.IP(ctx, "", "netns", "add", l.ns); err != nil {
				return fmt.Errorf("site %s: %w", l.site, err)
			}
		}
		if err := p.makeSite(ctx, l); err != nil {
			return fmt.Errorf("site %s: %w", l.site, err)
		}
	}
	// This machine's route to the site (again: it goes when the uplink
	// does, and costs one command).
	if err := bridge.IP(ctx, "", "route", "replace", l.subnet.String(), "via", l.gateway.Addr().String(), "dev", l.uplink, "onlink"); err != nil {
		return fmt.Errorf("site %s: %w", l.site, err)
	}
	return nil
}

// makeSite makes what l's namespace lacks of its bridge and uplink.
func (p *Provider) makeSite(ctx context.Context, l lan) error {
	has := func(name string) bool { return bridge.IP(ctx, "", "-n", l.ns, "link", "show", "dev", name) == nil }
	if !has(l.bridge) {
		// quickack: see bridge.Ensure.
		if err := bridge.IP(ctx, fmt.Sprintf("link add %[1]s type bridge\nlink set %[1]s address %[5]s\naddr add %[2]s dev %[1]s\nlink set %[1]s up\nlink set lo up\nroute replace %[3]s dev %[1]s proto kernel scope link src %[4]s quickack 1\n",
			l.bridge, l.gateway, l.gateway.Masked(), l.gateway.Addr(), bridge.OwnMAC(l.bridge)), "-n", l.ns); err != nil {
			return err
		}
	}
	if err := exec.CommandContext(ctx, "ip", "netns", "exec", l.ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward").Run(); err != nil {
		return fmt.Errorf("forwarding in %s: %w", l.ns, err)
	}
	if !has(siteUplink) {
		bridge.Remove(ctx, l.uplink) // half made
		// Neither end has an address: each reaches the other's by
		// onlink routes (a host answers ARP for any address of its own).
		if err := bridge.IP(ctx, fmt.Sprintf("link add %s type veth peer name %s netns %s\nlink set %s up\n", l.uplink, siteUplink, l.ns, l.uplink)); err != nil {
			return err
		}
		if err := bridge.IP(ctx, fmt.Sprintf("link set %s up\nroute replace default via %s dev %s onlink\n", siteUplink, p.gateway.Addr(), siteUplink), "-n", l.ns); err != nil {
			return err
		}
	}
	return nil
}

// routeSites lets hosts on an environment's bridge and its sites' reach
// one another through this machine, as a router between sites' networks:
// forwarding is turned on for the environment's bridge and the sites'
// uplinks alone, and an nftables table (booted_sites_ENV) drops what they
// would send anywhere else (this machine's other networks stay out of
// reach) and what the sites' routers send themselves (a site's conductors
// reach their own site, not another's).
func (p *Provider) routeSites(ctx context.Context) error {
	links := p.HostLinks()
	quoted := make([]string, len(links))
	for i, b := range links {
		quoted[i] = strconv.Quote(b)
	}
	var routers []string
	for _, l := range p.lans()[1:] {
		routers = append(routers, l.gateway.Addr().String())
	}
	set := "{ " + strings.Join(quoted, ", ") + " }"
	body := fmt.Sprintf("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tiifname %[1]s ip saddr { %[2]s } drop\n\t\tiifname %[1]s oifname %[1]s accept\n\t\tiifname %[1]s drop\n\t\toifname %[1]s drop\n\t}\n", set, strings.Join(routers, ", "))
	if err := nftables.Replace(ctx, "inet", nftables.Table("booted_sites_", p.env), body); err != nil {
		return fmt.Errorf("routing between the sites' networks of %s: %w", p.env, err)
	}
	for _, b := range links {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+b+"/forwarding", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("routing between the sites' networks of %s: %w", p.env, err)
		}
	}
	return nil
}

// unrouteSites removes routeSites' table (none: nothing to do); the
// forwarding goes with the links.
func unrouteSites(ctx context.Context, env string) error {
	if err := nftables.Delete(ctx, "inet", nftables.Table("booted_sites_", env)); err != nil {
		return fmt.Errorf("routing between the sites' networks of %s: %w", env, err)
	}
	return nil
}

// removeSite deletes a site's namespace (its bridge, and the uplink with
// it) and ends what runs there (its conductors, their callback nginx): a
// site's machine taken down. Its hosts must be gone first.
func removeSite(ctx context.Context, ns string) error {
	ino := bridge.NetnsInode(ns)
	if ino == 0 {
		return nil
	}
	if err := killAll(ctx, ino, 3*time.Second); err != nil {
		return fmt.Errorf("site network %s: %w", ns, err)
	}
	if err := bridge.IP(ctx, "", "netns", "del", ns); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
