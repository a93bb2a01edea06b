package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/inventory"
	"booted/internal/provider"
)

// Pinner records hosts that do not phone home (machines that already
// exist) with the keys a known_hosts file gives them, or, with AcceptNew,
// the key a host offers the first time (kept in the inventory, so a later
// hosts:clear does not make it first use again). A host with no known key
// is failed with what to do.
type Pinner struct {
	Store *inventory.Store
	Env   string
	// Provider is recorded on the hosts.
	Provider string
	// Role returns a host's role in the env file.
	Role func(name string) (string, bool)
	// Keys gives the hosts and their keys.
	Keys provider.KnownKeys
	// AcceptNew pins a host's key on first use (BOOTED_ACCEPT_NEW=1).
	AcceptNew bool
	// Timeout bounds reading a host's key (AcceptNew).
	Timeout time.Duration
}

// Record records every known host (only names, if given) as booted, or
// failed when its key is unknown.
func (p *Pinner) Record(ctx context.Context, names ...string) error {
	known, err := p.Keys.Known(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, kn := range known {
		if len(want) > 0 && !want[kn.Name] {
			continue
		}
		if err := p.record(ctx, kn); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pinner) record(ctx context.Context, kn provider.Known) error {
	role, _ := p.Role(kn.Name)
	key, reason, event := kn.Key, "", ""
	pinKey := "pinned/" + kn.Name
	if key == nil { // pinned on first use earlier?
		var pinned string
		if _, err := p.Store.Get(ctx, p.Env, pinKey, &pinned); err != nil {
			return err
		}
		if pinned != "" {
			key, _, _, _, _ = ssh.ParseAuthorizedKey([]byte(pinned))
		}
	}
	if key == nil && p.AcceptNew {
		var err error
		key, err = FetchKey(ctx, kn.Addr, kn.Port, p.Timeout)
		if err != nil {
			reason = fmt.Sprintf("BOOTED_ACCEPT_NEW: could not read its host key: %v", err)
		} else {
			event = "pinned on first use: " + ssh.FingerprintSHA256(key)
		}
	}
	file := p.Keys.KnownHostsFile()
	if key == nil && reason == "" {
		reason = fmt.Sprintf("host key unknown: %s has no key for %s; add it (ssh-keyscan -p %d %s >> %s) or run with BOOTED_ACCEPT_NEW=1 to pin it on first use",
			file, kn.Addr, kn.Port, kn.Addr, file)
	}
	return p.Store.Update(ctx, func(tx *inventory.Tx) error {
		if event != "" {
			if err := tx.Record(inventory.Event{Env: p.Env, Host: kn.Name, Kind: "host-key-pinned", Detail: event}); err != nil {
				return err
			}
			if err := tx.Put(p.Env, pinKey, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))); err != nil {
				return err
			}
		}
		cur, err := tx.Host(p.Env, kn.Name)
		exists := err == nil
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		err = tx.Modify(p.Env, kn.Name, func(h *inventory.Host) error {
			h.Role, h.Provider, h.Addr, h.Port = role, p.Provider, kn.Addr, kn.Port
			if key != nil {
				h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			}
			if !exists {
				h.State = inventory.Booted
				if key == nil {
					h.State, h.Reason = inventory.Failed, reason
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		switch {
		case key == nil:
			return tx.Advance(p.Env, kn.Name, inventory.Failed, reason)
		case exists && (cur.State == inventory.Terminated || cur.State == inventory.Stopped): // started again after its deletion or a stop
			if err := tx.Advance(p.Env, kn.Name, inventory.Booting, ""); err != nil {
				return err
			}
			return tx.Advance(p.Env, kn.Name, inventory.Booted, "")
		case exists && cur.State != inventory.Ready && cur.State != inventory.Serving:
			return tx.Advance(p.Env, kn.Name, inventory.Booted, "")
		}
		return nil
	})
}

// FetchKey connects to addr:port and returns the host key it offers,
// without logging in: the first-use pin of BOOTED_ACCEPT_NEW=1.
func FetchKey(ctx context.Context, addr string, port int, timeout time.Duration) (ssh.PublicKey, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var got ssh.PublicKey
	errGot := errors.New("got the key")
	_, _, _, err = ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              "booted",
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			got = k
			return errGot
		},
	})
	if got != nil {
		return got, nil
	}
	return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
}
