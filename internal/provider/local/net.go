package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// ip runs the ip command; stdin, if given, is a -batch script.
func ip(ctx context.Context, stdin string, args ...string) error {
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

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// shortName makes an interface name (at most 15 bytes) from parts.
func shortName(prefix string, parts ...string) string {
	h := fnv.New32a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%s%08x", prefix, h.Sum32())
}

// bridgeName is the environment's bridge: bt-ENV when that fits.
func bridgeName(env string) string {
	if n := "bt-" + env; len(n) <= 15 {
		return n
	}
	return shortName("bt-", env)
}

type route struct {
	Dst string `json:"dst"`
	Dev string `json:"dev"`
}

// checkSubnet refuses a subnet that overlaps a route of this machine other
// than through the environment's own bridge.
func checkSubnet(ctx context.Context, subnet netip.Prefix, bridge string) error {
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
			return fmt.Errorf("subnet %s overlaps this machine's route to %s (dev %s): choose another subnet in provider.local.subnet of the env file", subnet, r.Dst, r.Dev)
		}
	}
	return nil
}

// lockFile takes an exclusive flock on path until the returned func is called.
func lockFile(path string) (func(), error) {
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

// globalLock serialises bridge creation across environments and processes,
// so that two environments never take overlapping subnets.
const globalLock = "/run/booted-local.lock"

// ensureBridge creates the environment's bridge with the gateway address.
func (p *Provider) ensureBridge(ctx context.Context) error {
	if linkExists(p.bridge) {
		return nil
	}
	unlock, err := lockFile(globalLock)
	if err != nil {
		return err
	}
	defer unlock()
	if linkExists(p.bridge) {
		return nil
	}
	if err := checkSubnet(ctx, p.subnet, p.bridge); err != nil {
		return err
	}
	err = ip(ctx, fmt.Sprintf("link add %s type bridge\naddr add %s dev %s\nlink set %s up\n", p.bridge, p.gateway, p.bridge, p.bridge))
	if err != nil {
		ip(context.WithoutCancel(ctx), "", "link", "del", p.bridge)
		return fmt.Errorf("create bridge %s: %w", p.bridge, err)
	}
	return nil
}

// netnsInode returns the inode of the named network namespace, 0 if none.
func netnsInode(ns string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		return 0
	}
	return st.Ino
}
