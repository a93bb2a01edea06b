package remote

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// Target is one host to connect to.
type Target struct {
	Name string
	Addr string
	Port int
	// HostKey is the key pinned for the host; a connection offering any
	// other key is refused.
	HostKey ssh.PublicKey
}

// Auth is how booted logs in.
type Auth struct {
	User   string
	Signer ssh.Signer
}

// HostKeyError is returned when a host offers a key other than its pinned one.
type HostKeyError struct {
	Host, Addr string
	Want, Got  ssh.PublicKey
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host %s (%s): HOST KEY CHANGED: pinned %s, offered %s; refusing to connect (if the host was rebuilt, provision it again to enroll its new key: image:stop then image:start; a static host: replace its known_hosts entry; otherwise someone else answers at its address)",
		e.Host, e.Addr, ssh.FingerprintSHA256(e.Want), ssh.FingerprintSHA256(e.Got))
}

func algorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// Dial connects and logs in to t within timeout, or until ctx is done.
func Dial(ctx context.Context, t Target, a Auth, timeout time.Duration) (*ssh.Client, error) {
	if t.HostKey == nil {
		return nil, fmt.Errorf("host %s: no host key pinned; it has not phoned home (run hosts:logged)", t.Name)
	}
	port := t.Port
	if port == 0 {
		port = 22
	}
	addr := net.JoinHostPort(t.Addr, strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", t.Name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cfg := &ssh.ClientConfig{
		User: a.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(a.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, got ssh.PublicKey) error {
			if bytes.Equal(got.Marshal(), t.HostKey.Marshal()) {
				return nil
			}
			return &HostKeyError{Host: t.Name, Addr: t.Addr, Want: t.HostKey, Got: got}
		},
		HostKeyAlgorithms: algorithms(t.HostKey),
		Timeout:           timeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("host %s: ssh %s: %w", t.Name, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}
