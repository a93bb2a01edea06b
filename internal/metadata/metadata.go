// Package metadata is the instance metadata service (EC2's
// 169.254.169.254): the files the controller's nginx serves each instance
// at /latest/, chosen by the caller's source address (nginx's root is
// DIR/$remote_addr), so an instance reads its own and nothing of
// another's; and the DNAT that brings 169.254.169.254:80 on an
// environment's bridge to that nginx.
package metadata

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"booted/internal/nftables"
	"booted/internal/provider"
)

// Needs is the command that sets up the DNAT, and its Debian package.
var Needs = map[string]string{"nft": "nftables"}

// HostLinks are the links the hosts of providers ps sit on, where their
// instances reach Addr: the environment's bridge and its sites' uplinks
// (HostLinks), or a VM bridge (Bridge).
func HostLinks(ps []provider.Provider) []string {
	var out []string
	for _, p := range ps {
		var links []string
		switch b := p.(type) {
		case interface{ HostLinks() []string }:
			links = b.HostLinks()
		case interface{ Bridge() string }:
			links = []string{b.Bridge()}
		}
		for _, l := range links {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// Addr is where instances find the service.
const Addr = "169.254.169.254"

// Instance is what the service tells one instance about itself.
type Instance struct {
	ID, Hostname, Addr, Type, Image, Zone, Reservation string
	KeyName, PublicKey                                 string
	UserData                                           []byte
}

// Index is the name of the listing file in each directory (nginx's index).
const Index = "_index"

// Versions are the dated API versions served as copies of latest:
// cloud-init's EC2 datasource asks for 2009-04-04 (the oldest it knows)
// when the newer ones it tries are not there.
var Versions = []string{"2009-04-04"}

// Write writes in's files under dir/ADDR/latest (replacing earlier ones).
func Write(dir string, in Instance) error {
	a, err := netip.ParseAddr(in.Addr)
	if err != nil {
		return fmt.Errorf("instance %s: address %q: %w", in.ID, in.Addr, err)
	}
	root := filepath.Join(dir, a.String())
	tmp := root + ".new"
	os.RemoveAll(tmp)
	files := map[string]string{
		"meta-data/instance-id":                 in.ID,
		"meta-data/hostname":                    in.Hostname,
		"meta-data/local-hostname":              in.Hostname,
		"meta-data/local-ipv4":                  in.Addr,
		"meta-data/instance-type":               in.Type,
		"meta-data/ami-id":                      in.Image,
		"meta-data/reservation-id":              in.Reservation,
		"meta-data/placement/availability-zone": in.Zone,
	}
	if in.PublicKey != "" {
		files["meta-data/public-keys/0/openssh-key"] = in.PublicKey + "\n"
	}
	if len(in.UserData) > 0 {
		files["user-data"] = string(in.UserData)
	}
	// Each directory lists what it holds, as EC2 does (subdirectories with
	// a trailing slash; public-keys as "0=KEYNAME").
	lists := map[string][]string{}
	for f := range files {
		for d, name := filepath.Dir(f), filepath.Base(f); ; d, name = filepath.Dir(d), filepath.Base(d)+"/" {
			if !slices.Contains(lists[d], name) {
				lists[d] = append(lists[d], name)
			}
			if d == "." {
				break
			}
		}
	}
	for d, names := range lists {
		sort.Strings(names)
		if d == "meta-data/public-keys" {
			names = []string{"0=" + in.KeyName}
		}
		files[filepath.Join(d, Index)] = strings.Join(names, "\n")
	}
	for f, body := range files {
		p := filepath.Join(tmp, "latest", f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return err
		}
	}
	for _, v := range Versions {
		if err := os.Symlink("latest", filepath.Join(tmp, v)); err != nil {
			return err
		}
	}
	os.RemoveAll(root)
	return os.Rename(tmp, root)
}

// Remove removes the files of the instance at addr.
func Remove(dir, addr string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	return os.RemoveAll(filepath.Join(dir, a.String()))
}

// table is the nftables table of an environment's DNAT.
func table(env string) string { return nftables.Table("booted_md_", env) }

// inTable is the nftables table of what an environment's instances may
// reach on this machine.
func inTable(env string) string { return nftables.Table("booted_in_", env) }

// Route makes 169.254.169.254:80 on the bridges (those of the
// environment's hosts) reach to (the controller's nginx, ADDRESS:PORT),
// and keeps what comes in from them to what a host needs of this machine:
// that nginx (callbacks, metadata, netboot files), DHCP, DNS and TFTP,
// ping, and the answers to what this machine opened (SSH to the hosts);
// the controller's own SSH, NATS, APIs and anything else listening here
// are out of the instances' reach. It replaces the environment's earlier
// rules.
func Route(ctx context.Context, env string, bridges []string, to string) error {
	if len(bridges) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return fmt.Errorf("metadata service of %s: %q is not ADDRESS:PORT", env, to)
	}
	var rules, names strings.Builder
	for i, br := range bridges {
		fmt.Fprintf(&rules, "\t\tiifname %q ip daddr %s tcp dport 80 dnat to %s\n", br, Addr, to)
		if i > 0 {
			names.WriteString(", ")
		}
		fmt.Fprintf(&names, "%q", br)
	}
	if err := nftables.Replace(ctx, "ip", table(env), "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"+rules.String()+"\t}\n"); err != nil {
		return fmt.Errorf("metadata service of %s: %w", env, err)
	}
	in := fmt.Sprintf(`	chain input {
		type filter hook input priority filter; policy accept;
		iifname { %s } jump from_hosts
	}
	chain from_hosts {
		ct state established,related accept
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport %d accept
		udp dport { 53, 67, 69 } accept
		tcp dport 53 accept
		counter drop
	}
`, names.String(), ap.Port())
	if err := nftables.Replace(ctx, "inet", inTable(env), in); err != nil {
		return fmt.Errorf("what the hosts of %s may reach here: %w", env, err)
	}
	return nil
}

// Unroute removes the environment's DNAT and its filter (none: nothing to
// do).
func Unroute(ctx context.Context, env string) error {
	if err := nftables.Delete(ctx, "ip", table(env)); err != nil {
		return fmt.Errorf("metadata service of %s: %w", env, err)
	}
	if err := nftables.Delete(ctx, "inet", inTable(env)); err != nil {
		return fmt.Errorf("what the hosts of %s may reach here: %w", env, err)
	}
	return nil
}
