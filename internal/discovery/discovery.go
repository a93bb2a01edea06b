// Package discovery turns the boot log into inventory: it follows the log,
// checks each callback's token, and records the host that phoned home with
// its address and pinned host key, in state booted. Everything else is
// counted and recorded as a rejected callback, never as a host.
//
// The boot-log position is stored in the same transaction as the hosts a
// batch of lines records, so each callback is taken exactly once even when
// the CLI and the daemon follow the log at the same time, or one crashes.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/inventory"
)

// Counter names for rejected callbacks, kept per environment.
const (
	CountForged    = "callbacks.forged"
	CountUnknown   = "callbacks.unknown"
	CountMalformed = "callbacks.malformed"
	CountGarbled   = "callbacks.garbled"
	CountRefused   = "callbacks.refused"
	CountAccepted  = "callbacks.accepted"
)

// RejectedCounters lists the counters of rejected callbacks.
var RejectedCounters = []string{CountForged, CountUnknown, CountMalformed, CountGarbled, CountRefused}

const positionKey = "bootlog.position"

// Discoverer records the hosts of one environment from its boot log.
type Discoverer struct {
	Store  *inventory.Store
	Env    string
	Secret []byte
	// Log is the boot log (inventory/ENV/booted.log).
	Log string
	// Declared reports whether the env file declares a host name; names it
	// does not declare are known only if the inventory has them.
	Declared func(name string) (role string, ok bool)
	// Provider is recorded on hosts discovered without a record.
	Provider string
	// Logf, if set, is told about each rejected callback.
	Logf func(format string, args ...any)
	// Poll is how often to look at the log; zero means 25ms (a stat and a
	// read of nothing, so cheap; it bounds discovery latency).
	Poll time.Duration
	// OnBooted, if set, is called after a batch with the hosts it booted.
	OnBooted func(names []string)
}

var errMoved = errors.New("boot log position moved under us")

func (d *Discoverer) follower() *bootlog.Follower {
	poll := d.Poll
	if poll == 0 {
		poll = 25 * time.Millisecond
	}
	return &bootlog.Follower{Path: d.Log, Poll: poll, Logf: d.Logf}
}

// Position returns the stored boot-log position.
func (d *Discoverer) Position(ctx context.Context) (pos bootlog.Position, err error) {
	err = d.Store.Update(ctx, func(tx *inventory.Tx) error {
		_, err := tx.Get(d.Env, positionKey, &pos)
		return err
	})
	return pos, err
}

// Rewind makes discovery read the live boot log again from its start.
func (d *Discoverer) Rewind(tx *inventory.Tx) error {
	return tx.Put(d.Env, positionKey, bootlog.Position{})
}

// CatchUp reads the boot log from the stored position to its end.
func (d *Discoverer) CatchUp(ctx context.Context) error { return d.run(ctx, true) }

// Run follows the boot log until ctx is done.
func (d *Discoverer) Run(ctx context.Context) error { return d.run(ctx, false) }

func (d *Discoverer) run(ctx context.Context, untilCaughtUp bool) error {
	for {
		pos, err := d.Position(ctx)
		if err != nil {
			return err
		}
		_, err = d.follower().Follow(ctx, pos, untilCaughtUp, func(lines [][]byte, next bootlog.Position) error {
			err := d.apply(ctx, pos, lines, next)
			pos = next
			return err
		})
		if errors.Is(err, errMoved) {
			continue // another process took these lines; go on from where it got to
		}
		return err
	}
}

// apply records one batch of lines, if the stored position is still prev.
func (d *Discoverer) apply(ctx context.Context, prev bootlog.Position, lines [][]byte, next bootlog.Position) error {
	var booted []string
	err := d.Store.Update(ctx, func(tx *inventory.Tx) error {
		booted = booted[:0]
		var cur bootlog.Position
		if _, err := tx.Get(d.Env, positionKey, &cur); err != nil {
			return err
		}
		if cur != prev {
			return errMoved
		}
		for _, l := range lines {
			name, err := d.take(tx, l)
			if err != nil {
				return err
			}
			if name != "" {
				booted = append(booted, name)
			}
		}
		return tx.Put(d.Env, positionKey, next)
	})
	if err == nil && d.OnBooted != nil && len(booted) > 0 {
		d.OnBooted(booted)
	}
	return err
}

// take handles one line; it returns the host it booted, if any.
func (d *Discoverer) take(tx *inventory.Tx, line []byte) (string, error) {
	reject := func(counter, host, why string) (string, error) {
		if d.Logf != nil {
			d.Logf("%s: rejected callback: %s", d.Env, why)
		}
		if err := tx.Count(d.Env, counter, 1); err != nil {
			return "", err
		}
		return "", tx.Record(inventory.Event{Env: d.Env, Host: host, Kind: "callback-rejected", Detail: why})
	}
	if len(strings.TrimSpace(string(line))) == 0 {
		return "", nil
	}
	cb, err := bootlog.ParseLine(line)
	switch {
	case errors.Is(err, bootlog.ErrGarbled):
		return reject(CountGarbled, "", fmt.Sprintf("garbled boot-log line: %v", err))
	case err != nil:
		return reject(CountMalformed, "", fmt.Sprintf("from %s: %v", cb.Remote, err))
	}
	if !cb.Verify(d.Secret, d.Env) {
		return reject(CountForged, "", fmt.Sprintf("wrong token for %q from %s", cb.Name, cb.Remote))
	}
	role, declared := "", false
	if d.Declared != nil {
		role, declared = d.Declared(cb.Name)
	}
	h, err := tx.Host(d.Env, cb.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return "", err
	}
	if !exists && !declared {
		return reject(CountUnknown, "", fmt.Sprintf("unknown host %q from %s", cb.Name, cb.Remote))
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cb.Key)))
	if exists && !inventory.CanMove(h.State, inventory.Booted) {
		return reject(CountRefused, cb.Name, fmt.Sprintf("callback from %s while it is %s", cb.Name, h.State))
	}
	if exists && h.HostKey != "" && h.HostKey != key {
		if err := tx.Record(inventory.Event{Env: d.Env, Host: cb.Name, Kind: "host-key-changed", Detail: "new key " + ssh.FingerprintSHA256(cb.Key)}); err != nil {
			return "", err
		}
	}
	err = tx.Modify(d.Env, cb.Name, func(h *inventory.Host) error {
		if h.Role == "" {
			h.Role = role
		}
		if h.Provider == "" {
			h.Provider = d.Provider
		}
		if !exists {
			h.State = inventory.Booted
		}
		h.Addr, h.HostKey = cb.Remote.String(), key
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := tx.Advance(d.Env, cb.Name, inventory.Booted, ""); err != nil {
		return "", err
	}
	return cb.Name, tx.Count(d.Env, CountAccepted, 1)
}

// Forget forgets the discovered hosts of the environment (those still being
// provisioned or booting stay: an operation waits on them) and makes
// discovery read the live boot log again from its start. It returns how
// many it forgot.
func (d *Discoverer) Forget(ctx context.Context, why string) (int, error) {
	n := 0
	err := d.Store.Update(ctx, func(tx *inventory.Tx) error {
		n = 0
		hosts, err := tx.Hosts(d.Env)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			switch h.State {
			case inventory.Requested, inventory.Provisioning, inventory.Booting:
				continue
			}
			if err := tx.Forget(d.Env, h.Name, why); err != nil {
				return err
			}
			n++
		}
		return d.Rewind(tx)
	})
	return n, err
}

// Rejected returns the count of rejected callbacks of env and a line that
// breaks it down ("forged 1, unknown 0, ...").
func Rejected(ctx context.Context, store *inventory.Store, env string) (int64, string, error) {
	c, err := store.Counters(ctx, env)
	if err != nil {
		return 0, "", err
	}
	var total int64
	var parts []string
	for _, n := range RejectedCounters {
		total += c[n]
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(n, "callbacks."), c[n]))
	}
	return total, strings.Join(parts, ", "), nil
}
