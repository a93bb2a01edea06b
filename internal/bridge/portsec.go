package bridge

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"booted/internal/nftables"
)

// Port security (OpenStack's anti-spoofing): a port of a bridge of
// booted's passes only the frames of the host booted attached there: from
// the MAC and the IPv4 address booted gave it, ARP included (so no host
// answers for another's address or the gateway's), DHCP requests, and no
// DHCP server's answers (booted's dnsmasq answers from the bridge itself,
// not from a port); anything else (IPv6, VLAN tags, other protocols) is
// dropped. The metadata service, which answers by source address, can
// then trust it. One nftables table of the bridge family per environment
// and network namespace holds a chain per port and a map from each port
// to its chain.

// GuardTable is env's port-security table (of the bridge family).
func GuardTable(env string) string { return nftables.Table("booted_ps_", env) }

// guardChain is port's chain.
func guardChain(port string) string {
	return "port_" + strings.NewReplacer("-", "_", ".", "_").Replace(port)
}

// Guard makes port (a bridge port in network namespace ns, "" for this
// machine's) pass only what the host with mac and ip sends. Guarding a
// port again replaces its rules.
func Guard(ctx context.Context, ns, env, port, mac string, ip netip.Addr) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || !ip.Is4() || !validPort(port) {
		return fmt.Errorf("port security for %s: MAC %q, address %s: want a MAC and an IPv4 address", port, mac, ip)
	}
	t, c := GuardTable(env), guardChain(port)
	var b strings.Builder
	fmt.Fprintf(&b, "add table bridge %s\n", t)
	fmt.Fprintf(&b, "add map bridge %s ports { type ifname : verdict; }\n", t)
	fmt.Fprintf(&b, "add chain bridge %s prerouting { type filter hook prerouting priority -200; policy accept; }\n", t)
	fmt.Fprintf(&b, "flush chain bridge %s prerouting\n", t)
	fmt.Fprintf(&b, "add rule bridge %s prerouting iifname vmap @ports\n", t)
	fmt.Fprintf(&b, "add chain bridge %s %s\nflush chain bridge %s %s\n", t, c, t, c)
	for _, r := range []string{
		fmt.Sprintf("ether saddr != %s counter drop", hw),
		"ether type != { ip, arp } counter drop",
		fmt.Sprintf("arp saddr ether != %s counter drop", hw),
		fmt.Sprintf("arp saddr ip != %s counter drop", ip),
		"udp sport 67 counter drop",
		"ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
		fmt.Sprintf("ip saddr != %s counter drop", ip),
	} {
		fmt.Fprintf(&b, "add rule bridge %s %s %s\n", t, c, r)
	}
	fmt.Fprintf(&b, "add element bridge %s ports { %q : jump %s }\n", t, port, c)
	return nft(ctx, ns, b.String())
}

// Unguard removes port's rules (a port not guarded: nothing to do).
func Unguard(ctx context.Context, ns, env, port string) error {
	if !validPort(port) {
		return fmt.Errorf("port security: %q is not an interface name", port)
	}
	t, c := GuardTable(env), guardChain(port)
	// Each made first, so that removing it cannot fail for its absence.
	return nft(ctx, ns, fmt.Sprintf(`add table bridge %[1]s
add map bridge %[1]s ports { type ifname : verdict; }
add chain bridge %[1]s %[2]s
add element bridge %[1]s ports { %[3]q : jump %[2]s }
delete element bridge %[1]s ports { %[3]q : jump %[2]s }
flush chain bridge %[1]s %[2]s
delete chain bridge %[1]s %[2]s
`, t, c, port))
}

// Unguarded removes env's port-security table in ns (once its bridge is gone).
func Unguarded(ctx context.Context, ns, env string) error {
	return nft(ctx, ns, fmt.Sprintf("add table bridge %[1]s\ndelete table bridge %[1]s\n", GuardTable(env)))
}

// validPort says whether port is an interface name nft can take as is.
func validPort(port string) bool {
	if port == "" || len(port) > 15 {
		return false
	}
	for _, r := range port {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func nft(ctx context.Context, ns, script string) error {
	cmd := CommandIn(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
