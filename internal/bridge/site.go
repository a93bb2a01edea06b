package bridge

import (
	"context"
	"os/exec"

	"golang.org/x/sys/unix"
)

// A site with a subnet of its own (sites.X.subnet) is a network behind a
// router of its own: a network namespace of this machine owns the site's
// bridge. The local provider makes it; the site's local hosts and
// bare-metal nodes are on its bridge; its conductors run in it.

// SiteNetns is the network namespace of site's network (its router).
func SiteNetns(env, site string) string { return "booted-" + env + "." + site }

// SiteBridge is the name of site's bridge (in its namespace).
func SiteBridge(env, site string) string {
	if n := "bt-" + env + "-" + site; len(n) <= 15 {
		return n
	}
	return ShortName("bs", env, site)
}

// NetnsInode returns the inode of the named network namespace, 0 if none.
func NetnsInode(ns string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		return 0
	}
	return st.Ino
}

// InNetns reports whether this process is in the named network namespace.
// (PID 1's namespace cannot be read on every machine: this compares with
// the named one, never with PID 1's.)
func InNetns(ns string) bool {
	var self unix.Stat_t
	ino := NetnsInode(ns)
	return ino != 0 && unix.Stat("/proc/self/ns/net", &self) == nil && self.Ino == ino
}

// CommandIn returns the command name args to run in network namespace ns:
// as it is when ns is "" or this process is in it already, else entered
// with ip netns exec (which execs it: the command keeps its pid).
func CommandIn(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	if ns == "" || InNetns(ns) {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}
