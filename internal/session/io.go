package session

import (
	"context"

	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/remote"
	"booted/internal/service"
)

// HostIO is how the targets reach hosts: over SSH and HTTP (fleet.SSH), or
// in memory in the fast tests. Everything the targets do on a host goes
// through it.
type HostIO interface {
	// Each runs step on every host, at most opt.Parallel at once, each
	// within opt.Timeout, and returns one result per host in order.
	Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c fleet.Conn) error) []remote.Result
	// Alive checks each host with ping and an SSH login against its
	// pinned key: nil means it is up.
	Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error
	// WaitHealthy waits for def's health check on h to pass.
	WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error
	// Checks runs def's checks (service.yaml) against h.
	Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult
	// Get fetches path from def on h.
	Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error)
}

// hostConn is one host during Each.
type hostConn = fleet.Conn

var _ HostIO = (*fleet.SSH)(nil)
