package local

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"booted/internal/bridge"
	"booted/internal/nftables"
)

// ensureBridges creates the environment's bridge and its sites' (each
// with its gateway address) and, with sites, the routing between them.
func (p *Provider) ensureBridges(ctx context.Context) error {
	if err := bridge.Ensure(ctx, p.bridge, p.gateway, "provider.local.subnet"); err != nil {
		return err
	}
	if len(p.sites) == 0 {
		return nil
	}
	for site, l := range p.sites {
		if err := bridge.Ensure(ctx, l.bridge, l.gateway, "sites."+site+".subnet"); err != nil {
			return err
		}
	}
	return routeSites(ctx, p.env, p.Bridges())
}

// netnsInode returns the inode of the named network namespace, 0 if none.
func netnsInode(ns string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		return 0
	}
	return st.Ino
}

// routeSites lets hosts on bridges (an environment's and its sites')
// reach one another through this machine, as a router between sites'
// networks: forwarding is turned on for those bridges alone, and an
// nftables table (booted_sites_ENV) drops what they would send anywhere
// else (this machine's other networks stay out of reach).
func routeSites(ctx context.Context, env string, bridges []string) error {
	quoted := make([]string, len(bridges))
	for i, b := range bridges {
		quoted[i] = strconv.Quote(b)
	}
	set := "{ " + strings.Join(quoted, ", ") + " }"
	body := fmt.Sprintf("\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tiifname %[1]s oifname %[1]s accept\n\t\tiifname %[1]s drop\n\t\toifname %[1]s drop\n\t}\n", set)
	if err := nftables.Replace(ctx, "inet", nftables.Table("booted_sites_", env), body); err != nil {
		return fmt.Errorf("routing between the sites' bridges of %s: %w", env, err)
	}
	for _, b := range bridges {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+b+"/forwarding", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("routing between the sites' bridges of %s: %w", env, err)
		}
	}
	return nil
}

// unrouteSites removes routeSites' table (none: nothing to do); the
// forwarding goes with the bridges.
func unrouteSites(ctx context.Context, env string) error {
	if err := nftables.Delete(ctx, "inet", nftables.Table("booted_sites_", env)); err != nil {
		return fmt.Errorf("routing between the sites' bridges of %s: %w", env, err)
	}
	return nil
}
