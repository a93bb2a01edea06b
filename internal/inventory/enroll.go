package inventory

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Enrollment is how a host proves itself when it phones home: a pending
// single-use token (kept hashed) that a provisioning issued, and the key and
// address pinned by the first callback that used one. It outlives the
// host's record (hosts:clear forgets hosts, not their pins), and changes
// only by a new provisioning (Issue) and the callback that consumes its
// token (Pin).
type Enrollment struct {
	Env, Name string
	// TokenHash is the pending token's hash ("" when none is pending);
	// it is good from Issued until Expires, from FromAddr if set.
	TokenHash       string
	Issued, Expires time.Time
	FromAddr        string
	// Key and KeyAddr are the pinned key and address ("" before the first
	// enrollment), pinned at Pinned.
	Key, KeyAddr string
	Pinned       time.Time
	// LastSigned is the host's time in the newest signed callback taken:
	// an older one is a replay.
	LastSigned int64
	// UsedHash is the hash of the token the pin was made with: reading its
	// callback again (after hosts:clear) finds the host again, nothing more.
	UsedHash string
	// Revoked: the machine the pinned key was made on is gone (its
	// instance was deleted); the key proves nothing until a new
	// provisioning's token pins one again.
	Revoked bool
}

// Issue records a new pending token for host name (a new provisioning),
// good until expires and, if from is set, only from that address. The
// pinned key stays until the token is used.
func (tx *Tx) Issue(env, name, tokenHash string, expires time.Time, from string) error {
	if err := tx.write(); err != nil {
		return err
	}
	_, err := tx.exec(`INSERT INTO enrollments (env, name, token_hash, issued, expires, from_addr) VALUES (?,?,?,?,?,?)
		ON CONFLICT (env, name) DO UPDATE SET token_hash=excluded.token_hash, issued=excluded.issued, expires=excluded.expires, from_addr=excluded.from_addr`,
		env, name, tokenHash, tx.now.UnixNano(), expires.UnixNano(), from)
	if err != nil {
		return fmt.Errorf("inventory: enrollment of %s: %w", name, err)
	}
	return tx.Record(Event{Env: env, Host: name, Kind: "enrollment-issued", Detail: fmt.Sprintf("single-use token, good until %s", expires.UTC().Format(time.RFC3339))})
}

// Enrollment returns host name's enrollment; found is false when it has
// none (it was never provisioned by booted).
func (tx *Tx) Enrollment(env, name string) (e Enrollment, found bool, err error) {
	var issued, expires, pinned int64
	err = tx.queryRow(`SELECT env, name, token_hash, issued, expires, from_addr, key, key_addr, pinned, last_signed, used_hash, revoked
		FROM enrollments WHERE env = ? AND name = ?`, env, name).Scan(&e.Env, &e.Name, &e.TokenHash, &issued, &expires, &e.FromAddr, &e.Key, &e.KeyAddr, &pinned, &e.LastSigned, &e.UsedHash, &e.Revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("inventory: enrollment of %s: %w", name, err)
	}
	e.Issued, e.Expires = time.Unix(0, issued), time.Unix(0, expires)
	if pinned != 0 {
		e.Pinned = time.Unix(0, pinned)
	}
	return e, true, nil
}

// Pin uses host name's pending token: key and addr are pinned, the token
// is gone.
func (tx *Tx) Pin(env, name, key, addr string, signedAt int64) error {
	if err := tx.write(); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE enrollments SET used_hash = token_hash, token_hash = '', key = ?, key_addr = ?, pinned = ?, last_signed = `+tx.e.greatest+`(last_signed, ?), revoked = 0
		WHERE env = ? AND name = ?`, key, addr, tx.now.UnixNano(), signedAt, env, name)
	if err != nil {
		return fmt.Errorf("inventory: pin %s: %w", name, err)
	}
	return nil
}

// Revoke makes host name's pinned key prove nothing (the machine it was
// made on is gone: its instance was deleted): only a new provisioning's
// token pins a key for it again.
func (tx *Tx) Revoke(env, name string) error {
	if err := tx.write(); err != nil {
		return err
	}
	res, err := tx.exec(`UPDATE enrollments SET revoked = 1 WHERE env = ? AND name = ? AND key != '' AND revoked = 0`, env, name)
	if err != nil {
		return fmt.Errorf("inventory: revoke the key of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	return tx.Record(Event{Env: env, Host: name, Kind: "host-key-revoked", Detail: "its instance was deleted: the pinned key proves nothing until a new provisioning pins one"})
}

// Signed records the host's time of a signed callback taken.
func (tx *Tx) Signed(env, name string, at int64) error {
	if err := tx.write(); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE enrollments SET last_signed = `+tx.e.greatest+`(last_signed, ?) WHERE env = ? AND name = ?`, at, env, name)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

// Expect makes host name's pending token good only from addr (the address
// its provider gave it).
func (tx *Tx) Expect(env, name, addr string) error {
	if err := tx.write(); err != nil {
		return err
	}
	_, err := tx.exec(`UPDATE enrollments SET from_addr = ? WHERE env = ? AND name = ? AND token_hash != ''`, addr, env, name)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}
