package remote

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/shell"
)

// ErrUnreachable wraps a failure to reach a host at all (TCP connect or
// handshake timing out), as opposed to a failure once connected.
var ErrUnreachable = errors.New("unreachable")

// Pool keeps a connection per host, so that the steps of one operation
// (mkdir, upload, switch, start, check) share it, and the operations of one
// session (liveness login, status read, load-balancer compare) too; but at
// most max of them: past that, the least recently used connection no step
// is using is closed, so that an operation over 1,000 hosts holds as many
// connections (and as much memory) as its parallelism, not as its hosts.
// Close ends them all.
type Pool struct {
	auth    Auth
	timeout time.Duration
	max     int

	mu    sync.Mutex
	conns map[string]*pooled
	// busy counts the steps running per host: their connection stays.
	busy map[string]int
	tick uint64
}

// pooled is a connection and what it was made for.
type pooled struct {
	c *ssh.Client
	t Target
	// fresh: not used by a step since it was dialed or last checked.
	fresh bool
	// used orders the connections by their last use (the pool's tick).
	used uint64
}

// NewPool returns a pool that logs in with auth, giving each dial timeout,
// and keeps at most max connections open (0: no bound).
func NewPool(auth Auth, timeout time.Duration, max int) *Pool {
	return &Pool{auth: auth, timeout: timeout, max: max, conns: map[string]*pooled{}, busy: map[string]int{}}
}

// Kept names the hosts the pool keeps a connection to, sorted.
func (p *Pool) Kept() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.conns))
}

// hold marks a step running on host name (its connection is not closed
// to make room); release ends it and closes what is over the bound.
func (p *Pool) hold(name string) {
	p.mu.Lock()
	p.busy[name]++
	p.mu.Unlock()
}

func (p *Pool) release(name string) {
	p.mu.Lock()
	if p.busy[name]--; p.busy[name] <= 0 {
		delete(p.busy, name)
	}
	if pc := p.conns[name]; pc != nil {
		p.tick++
		pc.used = p.tick
	}
	idle := p.trim()
	p.mu.Unlock()
	closeAll(idle)
}

// trim takes out of the pool the least recently used connections of
// hosts no step is using until at most max are left, and returns them
// to be closed (outside the lock). Called with p.mu held.
func (p *Pool) trim() []*ssh.Client {
	if p.max <= 0 || len(p.conns) <= p.max {
		return nil
	}
	var idle []string
	for n := range p.conns {
		if p.busy[n] == 0 {
			idle = append(idle, n)
		}
	}
	slices.SortFunc(idle, func(a, b string) int { return cmp.Compare(p.conns[a].used, p.conns[b].used) })
	var out []*ssh.Client
	for _, n := range idle {
		if len(p.conns) <= p.max {
			break
		}
		out = append(out, p.conns[n].c)
		delete(p.conns, n)
	}
	return out
}

func closeAll(cs []*ssh.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// sameTarget tells whether a connection made for a still reaches b: the
// same address, port and pinned key (a re-enrolled host is dialed again).
func sameTarget(a, b Target) bool {
	return a.Addr == b.Addr && a.Port == b.Port && a.HostKey != nil && b.HostKey != nil &&
		bytes.Equal(a.HostKey.Marshal(), b.HostKey.Marshal())
}

// Client returns the connection to t, dialing it the first time.
func (p *Pool) Client(ctx context.Context, t Target) (*ssh.Client, error) {
	p.mu.Lock()
	pc := p.conns[t.Name]
	if pc != nil {
		p.tick++
		pc.used = p.tick
	}
	p.mu.Unlock()
	if pc != nil && sameTarget(pc.t, t) {
		return pc.c, nil
	}
	c, err := Dial(ctx, t, p.auth, p.timeout)
	if err != nil {
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &oe) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return nil, err
	}
	return p.keep(t, c, false), nil
}

// keep records c as t's connection, unless one for the same target is
// kept already: then c is closed and that one returned (a step may be
// using it; the next Each checks it before use).
func (p *Pool) keep(t Target, c *ssh.Client, fresh bool) *ssh.Client {
	p.mu.Lock()
	p.tick++
	if old := p.conns[t.Name]; old != nil {
		if sameTarget(old.t, t) {
			old.used = p.tick
			p.mu.Unlock()
			c.Close()
			return old.c
		}
		old.c.Close() // made for another address or key: never to be used
	}
	p.conns[t.Name] = &pooled{c: c, t: t, fresh: fresh, used: p.tick}
	idle := p.trim()
	p.mu.Unlock()
	closeAll(idle)
	return c
}

// Login dials and logs in to t afresh (a liveness check: the host answers
// SSH with its pinned key and takes the deploy key now) and keeps the
// connection for the steps that follow. Its error is Dial's.
func (p *Pool) Login(ctx context.Context, t Target) error {
	c, err := Dial(ctx, t, p.auth, p.timeout)
	if err != nil {
		p.Drop(t.Name)
		return err
	}
	p.keep(t, c, true)
	return nil
}

// check makes sure the kept connection to t, if any, still answers before
// a step uses it (the host may have been stopped or rebooted since): a
// keepalive request and its reply, within the dial timeout. One that does
// not answer is dropped, so that the step dials again.
func (p *Pool) check(ctx context.Context, t Target) {
	p.mu.Lock()
	pc := p.conns[t.Name]
	if pc != nil && pc.fresh {
		pc.fresh = false
		p.mu.Unlock()
		return // just dialed: the login was the check
	}
	p.mu.Unlock()
	if pc == nil {
		return
	}
	if !sameTarget(pc.t, t) {
		p.Drop(t.Name)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := pc.c.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			return
		}
	case <-ctx.Done():
	}
	p.mu.Lock()
	if p.conns[t.Name] == pc {
		delete(p.conns, t.Name)
	}
	p.mu.Unlock()
	pc.c.Close()
}

// Drop closes and forgets the connection to host name.
func (p *Pool) Drop(name string) {
	p.mu.Lock()
	pc := p.conns[name]
	delete(p.conns, name)
	p.mu.Unlock()
	if pc != nil {
		pc.c.Close()
	}
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, pc := range p.conns {
		pc.c.Close()
		delete(p.conns, n)
	}
}

// wrapper runs the command ($1) and, when the session's stdin closes (the
// client cancelled, or its connection dropped), kills the command and all
// it started, so that no remote process outlives a cancelled operation.
// sshd runs every session as a process group of its own (setsid), so
// "kill 0" reaches exactly this command's processes; daemons that detach
// with setsid (the service supervisor) are not in it. The command runs in a
// subshell so that an "exit" in it ends only the subshell.
const wrapper = `exec 3<&0
{ while read -r _ <&3; do :; done; kill -TERM 0; sleep 2; kill -KILL 0; } >/dev/null 2>&1 </dev/null &
w=$!
( eval "$1" ) </dev/null
rc=$?
kill $w 2>/dev/null
exit $rc`

// Command returns the remote command line that runs cmd under the wrapper.
func Command(cmd string) string {
	return "sh -c " + quote(wrapper) + " booted " + quote(cmd)
}

var quote = shell.Quote

// ExitError is a remote command's non-zero exit.
type ExitError struct {
	Status int
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Status)
}

// Run runs cmd on c with stdout and stderr going to the given writers. When
// ctx ends first, the remote command and everything it started are killed,
// and Run returns ctx's error.
func Run(ctx context.Context, c *ssh.Client, cmd string, stdout, stderr io.Writer) error {
	s, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	stdin, hold := io.Pipe()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(Command(cmd)); err != nil {
		hold.Close()
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		hold.Close()
		return exitErr(err)
	case <-ctx.Done():
		s.Signal(ssh.SIGTERM)
		hold.Close() // EOF on the wrapper's stdin: it kills the command's group
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return ctx.Err()
	}
}

func exitErr(err error) error {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Status: ee.ExitStatus(), Signal: ee.Signal()}
	}
	return err
}
