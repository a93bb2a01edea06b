package local

import (
	"context"

	"golang.org/x/sys/unix"

	"booted/internal/bridge"
)

// ensureBridge creates the environment's bridge with the gateway address.
func (p *Provider) ensureBridge(ctx context.Context) error {
	return bridge.Ensure(ctx, p.bridge, p.gateway, "provider.local.subnet")
}

// netnsInode returns the inode of the named network namespace, 0 if none.
func netnsInode(ns string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		return 0
	}
	return st.Ino
}
