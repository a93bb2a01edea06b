package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/remote"
	"booted/internal/testutil"
)

// sshServer is a real OpenSSH sshd on loopback that takes one key, reached
// through a TCP relay the test can cut (as a host that reboots does).
type sshServer struct {
	target remote.Target
	auth   remote.Auth
	log    string
	relay  *relay
}

// logins counts the logins sshd accepted.
func (s *sshServer) logins(t *testing.T) int {
	t.Helper()
	b, _ := os.ReadFile(s.log)
	return strings.Count(string(b), "Accepted publickey for root")
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	testutil.RequireRoot(t, "sshd runs as root", "/usr/sbin/sshd", "ssh-keygen")
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege-separation directory
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreePort(t)
	cfg := strings.Join([]string{
		"ListenAddress " + addr,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"PidFile none",
		"LogLevel INFO",
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "sshd.log")
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-f", filepath.Join(dir, "sshd_config"), "-E", log)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log)
			t.Fatalf("sshd did not listen on %s: %s", addr, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, addr)
	host, p, _ := net.SplitHostPort(r.ln.Addr().String())
	pn, _ := strconv.Atoi(p)
	return &sshServer{
		target: remote.Target{Name: "h1", Addr: host, Port: pn, HostKey: hk},
		auth:   remote.Auth{User: "root", Signer: signer},
		log:    log,
		relay:  r,
	}
}

// relay forwards TCP connections to a backend; cut closes the open ones.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	live  int // connections open through the relay
}

// open is how many connections are open through the relay.
func (r *relay) open() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

func startRelay(t *testing.T, backend string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(func() { ln.Close(); r.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, b)
			r.live++
			r.mu.Unlock()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(b, c); b.Close() }()
			go func() { defer wg.Done(); io.Copy(c, b); c.Close() }()
			go func() { wg.Wait(); r.mu.Lock(); r.live--; r.mu.Unlock() }()
		}
	}()
	return r
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func run(p *remote.Pool, t remote.Target, cmd string) remote.Result {
	res := p.Each(context.Background(), []remote.Target{t}, remote.Options{Timeout: 10 * time.Second}, func(ctx context.Context, s *remote.Session) error {
		return s.Run(ctx, cmd)
	})
	return res[0]
}

// One session, one login per host: the liveness login's connection serves
// the steps of every later fan-out (a no-op env:startAll paid three SSH
// handshakes per host before).
func TestPool_LoginServesLaterSteps(t *testing.T) {
	s := startSSHD(t)
	p := remote.NewPool(s.auth, 10*time.Second, 0)
	defer p.Close()
	if err := p.Login(context.Background(), s.target); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if r := run(p, s.target, "true"); r.Status != remote.OK {
			t.Fatalf("step %d: %+v", i, r)
		}
	}
	if n := s.logins(t); n != 1 {
		t.Errorf("sshd accepted %d logins for a login and 3 steps; want 1 (the connection kept)", n)
	}
}

// A kept connection that died (the host rebooted, its sshd went away) is
// found dead before a step uses it, and the step dials again rather than
// failing on a dead connection.
func TestPool_RedialsWhenKeptConnectionDied(t *testing.T) {
	s := startSSHD(t)
	p := remote.NewPool(s.auth, 10*time.Second, 0)
	defer p.Close()
	if r := run(p, s.target, "true"); r.Status != remote.OK {
		t.Fatalf("first step: %+v", r)
	}
	s.relay.cut()
	if r := run(p, s.target, "echo again"); r.Status != remote.OK {
		t.Fatalf("step after the connection died: %+v (want a new connection)", r)
	}
	if n := s.logins(t); n != 2 {
		t.Errorf("sshd accepted %d logins; want 2 (the first, then one after the cut)", n)
	}
}

// A host pinned again with another key is never reached through the
// connection that was checked against its old key: the pool dials again,
// and the new pin is checked (here the host still offers the old key, so
// the step is refused).
func TestPool_NewPinDialsAgain(t *testing.T) {
	s := startSSHD(t)
	p := remote.NewPool(s.auth, 10*time.Second, 0)
	defer p.Close()
	if err := p.Login(context.Background(), s.target); err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other, err := ssh.NewSignerFromKey(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	repinned := s.target
	repinned.HostKey = other.PublicKey()
	r := run(p, repinned, "true")
	var hk *remote.HostKeyError
	if r.Status == remote.OK || !errors.As(r.Err, &hk) {
		t.Fatalf("step with a new pin: %+v; want the host key refused", r)
	}
}

// An operation over more hosts than its parallelism keeps at most that
// many connections open (memory follows the parallelism, not the number
// of hosts: an operation over 1,000 hosts kept 1,000 open), and the ones
// it keeps, the most recently used, serve the next step without a login.
func TestPool_KeepsAtMostParallelConnections(t *testing.T) {
	s := startSSHD(t)
	const hosts, parallel = 10, 3
	p := remote.NewPool(s.auth, 10*time.Second, parallel)
	defer p.Close()
	var targets []remote.Target
	for i := range hosts {
		tg := s.target
		tg.Name = "h" + strconv.Itoa(i)
		targets = append(targets, tg)
	}
	res := p.Each(context.Background(), targets, remote.Options{Parallel: parallel, Timeout: 10 * time.Second}, func(ctx context.Context, rs *remote.Session) error {
		return rs.Run(ctx, "true")
	})
	if err := remote.Err(res); err != nil {
		t.Fatal(err)
	}
	kept := p.Kept()
	if len(kept) != parallel {
		t.Errorf("the pool keeps connections to %v after a step on %d hosts at %d at a time; want %d", kept, hosts, parallel, parallel)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.relay.open() > parallel && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.relay.open(); n > parallel {
		t.Errorf("%d connections still open to the hosts; want at most %d", n, parallel)
	}
	for s.logins(t) < hosts && time.Now().Before(deadline) { // sshd logs a login after it
		time.Sleep(20 * time.Millisecond)
	}
	before := s.logins(t)
	var again []remote.Target
	for _, tg := range targets {
		if slices.Contains(kept, tg.Name) {
			again = append(again, tg)
		}
	}
	res = p.Each(context.Background(), again, remote.Options{Parallel: parallel, Timeout: 10 * time.Second}, func(ctx context.Context, rs *remote.Session) error {
		return rs.Run(ctx, "true")
	})
	if err := remote.Err(res); err != nil {
		t.Fatal(err)
	}
	if n := s.logins(t) - before; n != 0 {
		t.Errorf("a second step on %v logged in %d times; want 0 (their connections kept)", kept, n)
	}
}
