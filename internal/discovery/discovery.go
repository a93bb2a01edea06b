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
	"booted/internal/printable"
)

// Counter names for rejected callbacks, kept per environment.
const (
	CountForged    = "callbacks.forged"
	CountUnknown   = "callbacks.unknown"
	CountMalformed = "callbacks.malformed"
	CountGarbled   = "callbacks.garbled"
	CountRefused   = "callbacks.refused"
	CountExpired   = "callbacks.expired"
	CountReplayed  = "callbacks.replayed"
	CountMismatch  = "callbacks.key-mismatch"
	CountAccepted  = "callbacks.accepted"
	CountFailed    = "callbacks.failure-reports"
)

// RejectedCounters lists the counters of rejected callbacks.
var RejectedCounters = []string{CountForged, CountUnknown, CountMalformed, CountGarbled, CountRefused, CountExpired, CountReplayed, CountMismatch}

// AlertKeyMismatch is the event recorded when a callback for a pinned
// host comes with another key or from another address: refused, and
// worth a look (a stolen token, or a host rebuilt behind booted's back).
const AlertKeyMismatch = "host-key-mismatch"

// MaxSkew bounds how far a signed callback's time may be from when nginx
// got it.
const MaxSkew = 10 * time.Minute

const positionKey = "bootlog.position"

// Discoverer records the hosts of one environment from its boot log.
type Discoverer struct {
	Store *inventory.Store
	Env   string
	// Log is the boot log (inventory/ENV/booted.log).
	Log string
	// Declared reports whether the env file declares a host name; names it
	// does not declare are known only if the inventory has them.
	Declared func(name string) (role string, ok bool)
	// Provider is recorded on hosts discovered without a record.
	Provider string
	// Logf, if set, is told about each rejected callback.
	Logf func(format string, args ...any)
	// Poll is how often to look at the log when inotify signals nothing
	// (a write wakes the follower at once); zero means 250ms.
	Poll time.Duration
	// OnBooted, if set, is called after a batch with the hosts it booted.
	OnBooted func(names []string)
	// Waiting, if set, is told (every 100 ms) of the hosts Await still
	// waits for.
	Waiting func(hosts []inventory.Host)
	// OnInstalled, if set, is called after a batch with the hosts whose
	// installer reported the disk written (netboot is turned off for them).
	OnInstalled func(names []string)
	// Pause, if set, runs each of Await's waits between its rounds (a
	// launch lets the environment's lock go while it waits for its hosts,
	// and takes it again before the next round).
	Pause func(wait func() error) error

	// Sited, if set, gives the callbacks the sites' conductors took from
	// their hosts (their sites' boot logs, as one sequence), after a
	// sequence number; SiteOf says a host's site. A callback is taken as
	// one of the boot log's, if its host is of the site it came from.
	Sited  func(ctx context.Context, after uint64) ([]SitedLine, error)
	SiteOf func(name string) string

	installed []string // of the batch being applied
}

// SitedLine is a line of a site's boot log, its sequence number and site.
type SitedLine struct {
	Seq  uint64
	Site string
	Line []byte
}

const sitedKey = "bootlog.sited"

var errMoved = errors.New("boot log position moved under us")

func (d *Discoverer) follower() *bootlog.Follower {
	poll := d.Poll
	if poll == 0 { // the backstop: a write to the log wakes the follower at once (inotify)
		poll = 250 * time.Millisecond
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

// Rewind makes discovery read the live boot log again from its start
// (and the sites' callbacks the cluster keeps).
func (d *Discoverer) Rewind(tx *inventory.Tx) error {
	if err := tx.Put(d.Env, sitedKey, uint64(0)); err != nil {
		return err
	}
	return tx.Put(d.Env, positionKey, bootlog.Position{})
}

// CatchUp reads the boot log from the stored position to its end, then
// the sites' callbacks.
func (d *Discoverer) CatchUp(ctx context.Context) error {
	if err := d.run(ctx, true); err != nil {
		return err
	}
	return d.catchUpSited(ctx)
}

// catchUpSited records the sites' callbacks after the stored sequence
// number, each once: the number moves in the transaction that records
// them.
func (d *Discoverer) catchUpSited(ctx context.Context) error {
	if d.Sited == nil {
		return nil
	}
	for {
		var after uint64
		if err := d.Store.Update(ctx, func(tx *inventory.Tx) error { _, err := tx.Get(d.Env, sitedKey, &after); return err }); err != nil {
			return err
		}
		lines, err := d.Sited(ctx, after)
		if err != nil || len(lines) == 0 {
			return err
		}
		var booted []string
		err = d.Store.Update(ctx, func(tx *inventory.Tx) error {
			booted, d.installed = booted[:0], d.installed[:0]
			var cur uint64
			if _, err := tx.Get(d.Env, sitedKey, &cur); err != nil {
				return err
			}
			if cur != after {
				return errMoved
			}
			for _, l := range lines {
				if cb, err := bootlog.ParseLine(l.Line); err == nil && d.SiteOf != nil && d.SiteOf(cb.Name) != l.Site {
					if d.Logf != nil {
						d.Logf("%s: rejected callback: for %s, from site %s's conductors: not a host of that site", d.Env, cb.Name, l.Site)
					}
					if err := tx.Count(d.Env, CountForged, 1); err != nil {
						return err
					}
					if err := tx.Record(inventory.Event{Env: d.Env, Host: cb.Name, Kind: "callback-rejected", Detail: fmt.Sprintf("callback for %s came from site %s's conductors: not a host of that site", cb.Name, l.Site)}); err != nil {
						return err
					}
					continue
				}
				if err := d.takeInto(tx, l.Line, &booted); err != nil {
					return err
				}
			}
			return tx.Put(d.Env, sitedKey, lines[len(lines)-1].Seq)
		})
		if errors.Is(err, errMoved) {
			continue // another process took them
		}
		if err != nil {
			return err
		}
		d.tell(booted)
	}
}

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
		booted, d.installed = booted[:0], d.installed[:0]
		var cur bootlog.Position
		if _, err := tx.Get(d.Env, positionKey, &cur); err != nil {
			return err
		}
		if cur != prev {
			return errMoved
		}
		for _, l := range lines {
			if err := d.takeInto(tx, l, &booted); err != nil {
				return err
			}
		}
		return tx.Put(d.Env, positionKey, next)
	})
	if err == nil {
		d.tell(booted)
	}
	return err
}

// takeInto takes one line (take), adding the host it booted to booted.
func (d *Discoverer) takeInto(tx *inventory.Tx, line []byte, booted *[]string) error {
	name, err := d.take(tx, line)
	if name != "" {
		*booted = append(*booted, name)
	}
	return err
}

// tell tells OnInstalled and OnBooted what a batch recorded did.
func (d *Discoverer) tell(booted []string) {
	if d.OnInstalled != nil && len(d.installed) > 0 {
		d.OnInstalled(d.installed)
	}
	if d.OnBooted != nil && len(booted) > 0 {
		d.OnBooted(booted)
	}
}

// take handles one line; it returns the host it booted, if any.
//
// A callback is taken when it carries the pending enrollment token of its
// host (a new provisioning: its key and address are pinned, the token is
// used up), or when it is signed with the key already pinned for it, from
// the pinned address, later than the last one taken (a reboot). A callback
// for a pinned host with another key or from another address is refused
// and raised as a host-key-mismatch alert; the host keeps its pin.
func (d *Discoverer) take(tx *inventory.Tx, line []byte) (string, error) {
	reject := func(counter, host, why string) (string, error) {
		if d.Logf != nil {
			d.Logf("%s: rejected callback: %s", d.Env, why)
		}
		if err := tx.Count(d.Env, counter, 1); err != nil {
			return "", err
		}
		kind := "callback-rejected"
		if counter == CountMismatch {
			kind = AlertKeyMismatch
		}
		return "", tx.Record(inventory.Event{Env: d.Env, Host: host, Kind: kind, Detail: why})
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
	if exists && h.Damaged != "" {
		return reject(CountRefused, cb.Name, fmt.Sprintf("callback from %s: its inventory row is damaged (%s); hosts:clear forgets it", cb.Name, h.Damaged))
	}
	if exists && !cb.Failed && !inventory.CanMove(h.State, inventory.Booted) {
		return reject(CountRefused, cb.Name, fmt.Sprintf("callback from %s while it is %s", cb.Name, h.State))
	}
	e, enrolled, err := tx.Enrollment(d.Env, cb.Name)
	if err != nil {
		return "", err
	}
	if !enrolled {
		return reject(CountForged, cb.Name, fmt.Sprintf("callback for %s from %s: booted never provisioned it (no enrollment)", cb.Name, cb.Remote))
	}
	key, remote := "", cb.Remote.String()
	if cb.Key != nil {
		key = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cb.Key)))
	}
	pinned, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(e.Key))
	signedByPin := pinned != nil && cb.VerifySig(d.Env, pinned) && (key == "" || key == e.Key)
	if cb.Installed { // the installer's report: the token stays for the installed system's phone-home
		switch {
		case !bootlog.TokenMatches(cb.Token, e.TokenHash):
			return reject(CountForged, cb.Name, fmt.Sprintf("install report for %s from %s without its pending token", cb.Name, remote))
		case cb.Time.After(e.Expires):
			return reject(CountExpired, cb.Name, fmt.Sprintf("install report for %s from %s: its token expired", cb.Name, remote))
		case e.FromAddr != "" && remote != e.FromAddr:
			return reject(CountForged, cb.Name, fmt.Sprintf("install report for %s from %s, not its address %s", cb.Name, remote, e.FromAddr))
		}
		d.installed = append(d.installed, cb.Name)
		return "", tx.Record(inventory.Event{Env: d.Env, Host: cb.Name, Kind: "stage", Detail: "installed: the installer wrote the disk"})
	}
	switch {
	case cb.Token != "" && bootlog.TokenMatches(cb.Token, e.TokenHash): // a new provisioning
		switch {
		case cb.Time.After(e.Expires):
			return reject(CountExpired, cb.Name, fmt.Sprintf("callback for %s from %s: its token expired at %s", cb.Name, remote, e.Expires.UTC().Format(time.RFC3339)))
		case e.FromAddr != "" && remote != e.FromAddr:
			return reject(CountForged, cb.Name, fmt.Sprintf("callback for %s from %s: the token is good only from its address %s", cb.Name, remote, e.FromAddr))
		case cb.Sig != nil && !cb.VerifySig(d.Env, cb.Key):
			return reject(CountForged, cb.Name, fmt.Sprintf("callback for %s from %s: its signature is not made with the key it sent", cb.Name, remote))
		case cb.Failed:
			return d.failed(tx, cb, role, exists)
		case key == "":
			return reject(CountMalformed, cb.Name, fmt.Sprintf("callback for %s from %s without a host key", cb.Name, remote))
		}
		if err := tx.Pin(d.Env, cb.Name, key, remote, cb.SignedAt); err != nil {
			return "", err
		}
		detail := "enrolled: pinned " + ssh.FingerprintSHA256(cb.Key) + " at " + remote
		if e.Key != "" && e.Key != key {
			detail = "re-provisioned: pinned " + ssh.FingerprintSHA256(cb.Key) + " in place of " + fingerprint(e.Key) + ", at " + remote
		}
		if err := tx.Record(inventory.Event{Env: d.Env, Host: cb.Name, Kind: "host-key-pinned", Detail: detail}); err != nil {
			return "", err
		}
		return d.boot(tx, cb.Name, role, key, remote, exists)
	case e.Revoked && (signedByPin || key == e.Key):
		// the machine this key was made on was deleted: whoever still has
		// it (the last tenant of a re-leased node, an intruder of a host
		// rebuilt) is not the host
		return reject(CountMismatch, cb.Name, fmt.Sprintf("callback for %s from %s with key %s: refused, that key was %s's before its instance was deleted; it enrolls with its new provisioning's token alone",
			cb.Name, remote, fingerprint(e.Key), cb.Name))
	case e.Key != "" && (key != "" && key != e.Key || (signedByPin || key == e.Key) && remote != e.KeyAddr):
		why := fmt.Sprintf("callback for %s from %s with key %s: refused, %s stays pinned to %s at %s (a new key needs a new provisioning)",
			cb.Name, remote, fingerprint(key), cb.Name, fingerprint(e.Key), e.KeyAddr)
		return reject(CountMismatch, cb.Name, why)
	case signedByPin:
		at := cb.Time.Unix()
		if cb.SignedAt > at+int64(MaxSkew/time.Second) || cb.SignedAt < at-int64(MaxSkew/time.Second) {
			return reject(CountExpired, cb.Name, fmt.Sprintf("callback for %s from %s signed at %s, %v or more from when it came", cb.Name, remote, time.Unix(cb.SignedAt, 0).UTC().Format(time.RFC3339), MaxSkew))
		}
		switch {
		case cb.SignedAt < e.LastSigned:
			return reject(CountReplayed, cb.Name, fmt.Sprintf("callback for %s from %s replays one signed before the last taken", cb.Name, remote))
		case cb.SignedAt == e.LastSigned && exists:
			return reject(CountReplayed, cb.Name, fmt.Sprintf("callback for %s from %s was taken already", cb.Name, remote))
		}
		if err := tx.Signed(d.Env, cb.Name, cb.SignedAt); err != nil {
			return "", err
		}
		if cb.Failed {
			return d.failed(tx, cb, role, exists)
		}
		return d.boot(tx, cb.Name, role, e.Key, e.KeyAddr, exists)
	case !exists && cb.Token != "" && bootlog.TokenMatches(cb.Token, e.UsedHash) && key == e.Key && remote == e.KeyAddr:
		// The enrollment callback read again after hosts:clear: the host
		// as pinned, found again.
		return d.boot(tx, cb.Name, role, e.Key, e.KeyAddr, exists)
	case cb.Token != "" && bootlog.TokenMatches(cb.Token, e.UsedHash):
		return reject(CountReplayed, cb.Name, fmt.Sprintf("callback for %s from %s with a token used already", cb.Name, remote))
	default:
		return reject(CountForged, cb.Name, fmt.Sprintf("callback for %s from %s: wrong token, and not signed with its pinned key", cb.Name, remote))
	}
}

// boot records host name as booted with its pinned key and address.
func (d *Discoverer) boot(tx *inventory.Tx, name, role, key, addr string, exists bool) (string, error) {
	if h, err := tx.Host(d.Env, name); err == nil && !inventory.CanMove(h.State, inventory.Booted) {
		if err := tx.Count(d.Env, CountRefused, 1); err != nil {
			return "", err
		}
		return "", tx.Record(inventory.Event{Env: d.Env, Host: name, Kind: "callback-rejected", Detail: fmt.Sprintf("callback from %s while it is %s", name, h.State)})
	}
	err := tx.Modify(d.Env, name, func(h *inventory.Host) error {
		if h.Role == "" {
			h.Role = role
		}
		if h.Provider == "" {
			h.Provider = d.Provider
		}
		if !exists {
			h.State = inventory.Booted
		}
		h.Addr, h.HostKey = addr, key
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := tx.Advance(d.Env, name, inventory.Booted, ""); err != nil {
		return "", err
	}
	return name, tx.Count(d.Env, CountAccepted, 1)
}

// failed marks the host of a failure report failed, with its log's tail.
func (d *Discoverer) failed(tx *inventory.Tx, cb bootlog.Callback, role string, exists bool) (string, error) {
	reason := "reported failed: " + oneLine(cb.Log)
	err := tx.Modify(d.Env, cb.Name, func(h *inventory.Host) error {
		if h.Role == "" {
			h.Role = role
		}
		if !exists {
			h.State, h.Reason = inventory.Failed, reason
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := tx.Count(d.Env, CountFailed, 1); err != nil {
		return "", err
	}
	if d.Logf != nil {
		d.Logf("host %s: %s", cb.Name, reason)
	}
	return "", tx.Advance(d.Env, cb.Name, inventory.Failed, reason)
}

// oneLine joins the last lines of a log with " | ", without what a
// terminal would act on (the log is the host's: printable.String).
func oneLine(log string) string {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if l = strings.TrimSpace(printable.String(strings.ReplaceAll(l, "\r", ""), false)); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, " | ")
}

func fingerprint(authorized string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
	if err != nil {
		return "(none)"
	}
	return ssh.FingerprintSHA256(k)
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
				if h.Damaged == "" {
					continue
				}
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

// Alerts returns the last n host-key-mismatch alerts of env, oldest first.
func Alerts(ctx context.Context, store *inventory.Store, env string, n int) ([]inventory.Event, error) {
	// by their kind: junk callbacks (each an event) cannot push an alert
	// out of sight
	return store.EventsOfKind(ctx, env, AlertKeyMismatch, n)
}
