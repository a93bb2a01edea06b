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
			r.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
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
	p := remote.NewPool(s.auth, 10*time.Second)
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
	p := remote.NewPool(s.auth, 10*time.Second)
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
	p := remote.NewPool(s.auth, 10*time.Second)
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
