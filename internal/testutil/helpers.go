package testutil

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/remote"
)

var update = flag.Bool("update", false, "rewrite golden files instead of comparing with them")

// Golden compares got with the golden file at path; with -update it
// rewrites the file instead.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", path, got)
	}
}

// FreePort returns a loopback address:port nothing listens on.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// FreeUDP returns a UDP port on 127.0.0.1 nothing listens on (a BMC's).
func FreeUDP(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// SyncBuffer is a bytes.Buffer a test may read while others write to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Bytes returns a copy of what was written so far.
func (s *SyncBuffer) Bytes() []byte { return []byte(s.String()) }

// Reset forgets what was written.
func (s *SyncBuffer) Reset() { s.mu.Lock(); defer s.mu.Unlock(); s.b.Reset() }

// SSHRun logs in to t as root with signer, checking t.HostKey, runs cmd
// and returns its output (stdout and stderr).
func SSHRun(t remote.Target, signer ssh.Signer, cmd string, timeout time.Duration) (string, error) {
	c, err := remote.Dial(context.Background(), t, remote.Auth{User: "root", Signer: signer}, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}
