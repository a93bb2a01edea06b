// Package fleet reaches an environment's hosts for real: it runs steps on
// them over SSH (bounded, a result per host), checks that they are alive
// (ping and an SSH login against the pinned key), acts on their service and
// load balancer through each step's connection, and talks to their
// services over HTTP. The targets use it through an interface of their
// own, so that their orchestration can also run against fakes.
package fleet

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"booted/internal/facts"
	"booted/internal/fanout"
	"booted/internal/files"
	"booted/internal/inventory"
	"booted/internal/lb"
	"booted/internal/liveness"
	"booted/internal/remote"
	"booted/internal/service"
)

// Conn is one host during Each.
type Conn interface {
	Host() inventory.Host
	// Note sets the short success message of the host's result.
	Note(msg string)
	// Run runs a shell command, its output going where Each's options say.
	Run(ctx context.Context, cmd string) error
	Deploy(ctx context.Context, def *service.Def, a *service.Artifact) (uploaded bool, err error)
	Start(ctx context.Context, def *service.Def, restart bool) (service.State, error)
	Stop(ctx context.Context, def *service.Def) (pid int, err error)
	// Put copies a local file to the host unless it has that content
	// there already (files.Put: 0 bytes copied), and says what is there
	// now; Get copies src on the host to local file dst unless dst has
	// that content already.
	Put(ctx context.Context, p files.PutSpec) (int64, files.Placed, error)
	Get(ctx context.Context, src, dst string) (int64, error)
	// Status is the service's state on the host (running, version, checksum).
	Status(ctx context.Context, def *service.Def) (service.State, error)
	// Facts gathers the host's facts (package facts).
	Facts(ctx context.Context) (map[string][]string, error)
	Rollback(ctx context.Context, def *service.Def) (version string, err error)
	ApplyLB(ctx context.Context, conf []byte) (string, error)
	StopLB(ctx context.Context) error
	Routes(ctx context.Context) ([]string, error)
	AccessLogSince(ctx context.Context, at int64) (int64, lb.Requests, error)
}

// SSH reaches real hosts: steps over SSH, liveness by ping and an SSH
// login, services over HTTP. One connection per host serves every call
// (the liveness login, then each Each's steps: a no-op env:startAll logs
// in once per host, not once per phase); each is checked with a keepalive
// before a later call reuses it. At most Parallel connections stay open
// (the least recently used idle one closes first). Close ends them.
type SSH struct {
	Auth        remote.Auth
	SSHTimeout  time.Duration
	PingTimeout time.Duration
	// Parallel bounds the connections kept (0: fanout.DefaultParallel).
	Parallel int

	once sync.Once
	pool *remote.Pool
}

func (x *SSH) conns() *remote.Pool {
	x.once.Do(func() { x.pool = remote.NewPool(x.Auth, x.SSHTimeout, cmp.Or(x.Parallel, fanout.DefaultParallel)) })
	return x.pool
}

// Close closes the connections kept to the hosts.
func (x *SSH) Close() error {
	x.conns().Close()
	return nil
}

// Target makes the SSH target of an inventory host.
func Target(h inventory.Host) (remote.Target, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		return remote.Target{}, fmt.Errorf("host %s: pinned host key unreadable: %w", h.Name, err)
	}
	return remote.Target{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: k}, nil
}

func (x *SSH) Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c Conn) error) []remote.Result {
	byName := map[string]inventory.Host{}
	var targets []remote.Target
	var skipped []remote.Result
	for _, h := range hosts {
		t, err := Target(h)
		if err != nil {
			skipped = append(skipped, remote.Result{Host: h.Name, Status: remote.Skipped, Error: "no pinned host key: it has not phoned home", Err: err})
			continue
		}
		byName[h.Name] = h
		targets = append(targets, t)
	}
	res := x.conns().Each(ctx, targets, opt, func(ctx context.Context, rs *remote.Session) error {
		return step(ctx, &sshConn{rs: rs, h: byName[rs.Target.Name]})
	})
	return append(skipped, res...)
}

func (x *SSH) Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error {
	addrs := make([]string, len(hosts))
	for i, h := range hosts {
		addrs[i] = h.Addr
	}
	pings := liveness.Ping(ctx, addrs, 3, x.PingTimeout, parallel)
	return fanout.Map(ctx, hosts, parallel, func(ctx context.Context, h inventory.Host) error {
		if err := pings[h.Addr]; err != nil {
			return err
		}
		t, err := Target(h)
		if err != nil {
			return err
		}
		return x.conns().Login(ctx, t)
	})
}

func (x *SSH) WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error {
	return def.WaitHealthy(ctx, h.Addr)
}

func (x *SSH) Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult {
	return def.RunChecks(ctx, h.Name, h.Addr)
}

func (x *SSH) Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error) {
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
func (c *sshConn) Put(ctx context.Context, p files.PutSpec) (int64, files.Placed, error) {
	cl, err := c.rs.Client(ctx)
	if err != nil {
		return 0, files.Placed{}, err
	}
	return files.Put(ctx, cl, p)
}
func (c *sshConn) Get(ctx context.Context, src, dst string) (int64, error) {
	cl, err := c.rs.Client(ctx)
	if err != nil {
		return 0, err
	}
	return files.Get(ctx, cl, src, dst)
}
func (c *sshConn) Facts(ctx context.Context) (map[string][]string, error) {
	out, err := c.rs.Output(ctx, facts.Script)
	if err != nil {
		return nil, err
	}
	return facts.Parse(out), nil
}
func (c *sshConn) Status(ctx context.Context, def *service.Def) (service.State, error) {
	return def.Status(ctx, c.rs)
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

// WriteKnownHosts writes a known_hosts file (atomically, 0600) with the
// pinned key of every host that has one and is not terminated.
func WriteKnownHosts(path string, hosts []inventory.Host) error {
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	var b strings.Builder
	for _, h := range hosts {
		if h.HostKey == "" || h.Addr == "" || h.State == inventory.Terminated {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
		if err != nil {
			continue
		}
		addr := h.Addr
		if h.Port != 0 && h.Port != 22 {
			addr = fmt.Sprintf("[%s]:%d", h.Addr, h.Port)
		}
		b.WriteString(knownhosts.Line([]string{addr}, k) + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
