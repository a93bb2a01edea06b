package targets

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/fanout"
	"booted/internal/inventory"
	"booted/internal/lb"
	"booted/internal/liveness"
	"booted/internal/remote"
	"booted/internal/service"
)

// hostIO is how the targets reach hosts: over SSH and HTTP (sshIO), or in
// memory in the fast tests. Everything the targets do on a host goes
// through it.
type hostIO interface {
	// Each runs step on every host, at most opt.Parallel at once, each
	// within opt.Timeout, and returns one result per host in order.
	Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c hostConn) error) []remote.Result
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
type hostConn interface {
	Host() inventory.Host
	// Note sets the short success message of the host's result.
	Note(msg string)
	// Run runs a shell command, its output going where Each's options say.
	Run(ctx context.Context, cmd string) error
	Deploy(ctx context.Context, def *service.Def, a *service.Artifact) (uploaded bool, err error)
	Start(ctx context.Context, def *service.Def, restart bool) (service.State, error)
	Stop(ctx context.Context, def *service.Def) (pid int, err error)
	Rollback(ctx context.Context, def *service.Def) (version string, err error)
	ApplyLB(ctx context.Context, conf []byte) (string, error)
	StopLB(ctx context.Context) error
	Routes(ctx context.Context) ([]string, error)
	AccessLogSince(ctx context.Context, at int64) (int64, lb.Requests, error)
}

// sshIO reaches real hosts.
type sshIO struct {
	auth        remote.Auth
	sshTimeout  time.Duration
	pingTimeout time.Duration
}

// target makes the SSH target of an inventory host.
func target(h inventory.Host) (remote.Target, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		return remote.Target{}, fmt.Errorf("host %s: pinned host key unreadable: %w", h.Name, err)
	}
	return remote.Target{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: k}, nil
}

func (x *sshIO) Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c hostConn) error) []remote.Result {
	byName := map[string]inventory.Host{}
	var targets []remote.Target
	var skipped []remote.Result
	for _, h := range hosts {
		t, err := target(h)
		if err != nil {
			skipped = append(skipped, remote.Result{Host: h.Name, Status: remote.Skipped, Error: "no pinned host key: it has not phoned home", Err: err})
			continue
		}
		byName[h.Name] = h
		targets = append(targets, t)
	}
	pool := remote.NewPool(x.auth, x.sshTimeout)
	defer pool.Close()
	res := pool.Each(ctx, targets, opt, func(ctx context.Context, rs *remote.Session) error {
		return step(ctx, &sshConn{rs: rs, h: byName[rs.Target.Name]})
	})
	return append(skipped, res...)
}

func (x *sshIO) Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error {
	addrs := make([]string, len(hosts))
	for i, h := range hosts {
		addrs[i] = h.Addr
	}
	pings := liveness.Ping(ctx, addrs, 3, x.pingTimeout, parallel)
	return fanout.Map(ctx, hosts, parallel, func(ctx context.Context, h inventory.Host) error {
		if err := pings[h.Addr]; err != nil {
			return err
		}
		t, err := target(h)
		if err != nil {
			return err
		}
		return liveness.SSH(ctx, t, x.auth, x.sshTimeout)
	})
}

func (x *sshIO) WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error {
	return def.WaitHealthy(ctx, h.Addr)
}

func (x *sshIO) Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult {
	return def.RunChecks(ctx, h.Name, h.Addr)
}

func (x *sshIO) Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error) {
	return def.Get(ctx, h.Addr, path)
}

// sshConn is one host over SSH.
type sshConn struct {
	rs *remote.Session
	h  inventory.Host
}

func (c *sshConn) Host() inventory.Host                      { return c.h }
func (c *sshConn) Note(msg string)                           { c.rs.Note = msg }
func (c *sshConn) Run(ctx context.Context, cmd string) error { return c.rs.Run(ctx, cmd) }
func (c *sshConn) Deploy(ctx context.Context, def *service.Def, a *service.Artifact) (bool, error) {
	return def.Deploy(ctx, c.rs, a)
}
func (c *sshConn) Start(ctx context.Context, def *service.Def, restart bool) (service.State, error) {
	return def.Start(ctx, c.rs, restart)
}
func (c *sshConn) Stop(ctx context.Context, def *service.Def) (int, error) {
	return def.Stop(ctx, c.rs)
}
func (c *sshConn) Rollback(ctx context.Context, def *service.Def) (string, error) {
	return def.Rollback(ctx, c.rs)
}
func (c *sshConn) ApplyLB(ctx context.Context, conf []byte) (string, error) {
	return lb.Apply(ctx, c.rs, conf)
}
func (c *sshConn) StopLB(ctx context.Context) error             { return lb.Stop(ctx, c.rs) }
func (c *sshConn) Routes(ctx context.Context) ([]string, error) { return lb.Routes(ctx, c.rs) }
func (c *sshConn) AccessLogSince(ctx context.Context, at int64) (int64, lb.Requests, error) {
	return lb.AccessLogSince(ctx, c.rs, at)
}
