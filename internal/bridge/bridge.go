// Package bridge makes an environment's Linux bridge: the network its
// local hosts and VMs share with this machine (and nothing else: there is
// no forwarding). A subnet overlapping a route of this machine is refused.
package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// IP runs the ip command; stdin, if given, is a -batch script.
func IP(ctx context.Context, stdin string, args ...string) error {
	if stdin != "" {
		args = append(args, "-batch", "-")
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// LinkExists reports whether a network interface exists.
func LinkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// ShortName makes an interface name (at most 15 bytes) from parts.
func ShortName(prefix string, parts ...string) string {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%s%08x", prefix, h.Sum32())
}

// Name is the environment's bridge: bt-ENV when that fits.
func Name(env string) string {
	if n := "bt-" + env; len(n) <= 15 {
		return n
	}
	return ShortName("bt-", env)
}

type route struct {
	Dst string `json:"dst"`
	Dev string `json:"dev"`
}

// CheckSubnet refuses a subnet that overlaps a route of this machine other
// than through the environment's own bridge.
func CheckSubnet(ctx context.Context, subnet netip.Prefix, bridge, field string) error {
	out, err := exec.CommandContext(ctx, "ip", "-j", "-4", "route", "show", "table", "main").Output()
	if err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	var routes []route
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "default" || r.Dev == bridge {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, err2 := netip.ParseAddr(r.Dst)
			if err2 != nil {
				continue
			}
			p = netip.PrefixFrom(a, 32)
		}
		if p.Overlaps(subnet) {
			return fmt.Errorf("subnet %s overlaps this machine's route to %s (dev %s): choose another subnet in %s of the env file", subnet, r.Dst, r.Dev, field)
		}
	}
	return nil
}

// LockFile takes an exclusive flock on path until the returned func is called.
func LockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// OwnMAC is bridge's own link-layer address (locally administered, from
// its name).
func OwnMAC(bridge string) string { return MAC("02:bb", bridge) }

// pinMAC gives an existing bridge its own address if it has none set
// (addr_assign_type 3: set by hand).
func pinMAC(ctx context.Context, bridge string) error {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", bridge, "addr_assign_type"))
	if err != nil || strings.TrimSpace(string(b)) == "3" {
		return nil
	}
	if err := IP(ctx, "", "link", "set", bridge, "address", OwnMAC(bridge)); err != nil {
		return fmt.Errorf("bridge %s: its own address: %w", bridge, err)
	}
	return nil
}

// globalLock serialises bridge creation across environments and processes,
// so that two environments never take overlapping subnets.
const globalLock = "/run/booted-local.lock"

// Ensure creates bridge with the gateway address (gateway/bits) and brings
// it up, unless it exists; field names the env file's subnet setting.
//
// The bridge gets an address of its own (OwnMAC): one without takes its
// ports' lowest, which changed as hosts' links came and went, and each
// change left the ARP entries of the hosts (and conductors) on it for the
// gateway pointing at an address no longer the bridge's: their packets to
// the controller (phone-home, NATS) were lost until the entry went stale,
// 15 to 45 s later. A bridge made before this gets its address now.
//
// The kernel's neighbour tables are raised for the subnet's hosts (see
// sizeNeigh) before the bridge is made, and lowered back when it goes.
func Ensure(ctx context.Context, bridge string, gateway netip.Prefix, field string) error {
	if LinkExists(bridge) {
		return pinMAC(ctx, bridge)
	}
	unlock, err := LockFile(globalLock)
	if err != nil {
		return err
	}
	defer unlock()
	if LinkExists(bridge) {
		return nil
	}
	if err := CheckSubnet(ctx, gateway.Masked(), bridge, field); err != nil {
		return err
	}
	if err := sizeNeigh(bridge, gateway.Masked()); err != nil {
		return fmt.Errorf("bridge %s for %s: %w", bridge, gateway.Masked(), err)
	}
	// quickack: this machine acknowledges the hosts' segments at once.
	// sshd leaves Nagle on for sessions without a terminal, so each small
	// reply it sends before our delayed ACK (40 ms) of its last one waits
	// for it: the first command on every new SSH connection took 45 ms
	// instead of 2 (measured with x/crypto/ssh against OpenSSH 9.2).
	err = IP(ctx, fmt.Sprintf("link add %[1]s type bridge\nlink set %[1]s address %[5]s\naddr add %[2]s dev %[1]s\nlink set %[1]s up\nroute replace %[3]s dev %[1]s proto kernel scope link src %[4]s quickack 1\n",
		bridge, gateway, gateway.Masked(), gateway.Addr(), OwnMAC(bridge)))
	if err != nil {
		IP(context.WithoutCancel(ctx), "", "link", "del", bridge)
		return fmt.Errorf("create bridge %s: %w", bridge, err)
	}
	return nil
}

// FreeAddr returns the lowest address of subnet from .10 upwards that used
// does not hold, keeping the broadcast address free.
func FreeAddr(subnet netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	a := subnet.Masked().Addr()
	for i := 0; i < 10; i++ {
		a = a.Next()
	}
	for ; subnet.Contains(a) && used[a]; a = a.Next() {
	}
	if !subnet.Contains(a) || !subnet.Contains(a.Next()) {
		return netip.Addr{}, fmt.Errorf("no free address left in %s", subnet)
	}
	return a, nil
}

// Remove deletes the link name (a bridge, veth or tap) if it exists; a
// bridge's room in the neighbour tables goes with it.
func Remove(ctx context.Context, name string) error {
	var err error
	if LinkExists(name) {
		err = IP(ctx, "", "link", "del", name)
	}
	if err == nil {
		if _, serr := os.Stat(filepath.Join(neighDir, name)); serr == nil {
			unlock, lerr := LockFile(globalLock)
			if lerr != nil {
				return lerr
			}
			defer unlock()
			err = sizeNeigh(name, netip.Prefix{})
		}
	}
	return err
}

// MAC makes a stable MAC address from a two-byte prefix ("02:b0") and a key.
func MAC(prefix, key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	s := h.Sum32()
	return fmt.Sprintf("%s:%02x:%02x:%02x:%02x", prefix, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}
