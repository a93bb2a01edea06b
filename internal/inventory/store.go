package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrNotFound is returned when a host is not in the inventory.
var ErrNotFound = errors.New("not in the inventory")

// ErrReadOnly is returned by a write through the transaction of View.
var ErrReadOnly = errors.New("inventory: write in a read-only transaction (use Update)")

// ErrStateByModify is returned when Modify's function changes the state of a
// recorded host: the lifecycle is walked by Advance (or Transition) only.
var ErrStateByModify = errors.New("inventory: a host's state changes through Advance, not Modify")

// Host is one host of one environment.
type Host struct {
	Env        string            `json:"env"`
	Name       string            `json:"name"`
	Role       string            `json:"role"`
	Provider   string            `json:"provider"`
	ProviderID string            `json:"providerId,omitempty"`
	Addr       string            `json:"ip"`
	Port       int               `json:"port,omitempty"`
	MAC        string            `json:"mac,omitempty"`
	HostKey    string            `json:"hostKey"`
	State      State             `json:"state"`
	Reason     string            `json:"reason,omitempty"`
	Attrs      map[string]string `json:"attrs,omitempty"`
	// Damaged says why the host's row could not be read whole ("" when
	// it could): such a host is listed, and can be forgotten or deleted,
	// but not worked on.
	Damaged string `json:"damaged,omitempty"`
	// Since is when the host entered its state.
	Since   time.Time `json:"since"`
	Updated time.Time `json:"updated"`
}

// Event is one recorded change.
type Event struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Env    string    `json:"env"`
	Host   string    `json:"host,omitempty"`
	Kind   string    `json:"kind"`
	From   State     `json:"from,omitempty"`
	To     State     `json:"to,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Store is the inventory database.
type Store struct {
	db   *sql.DB
	e    *engine
	now  func() time.Time
	path string
}

// Open opens (creating if needed) the inventory at where: a file's path,
// e.g. inventory/booted.db (SQLite), or a postgres:// URL (see CheckURL).
func Open(ctx context.Context, where string) (*Store, error) {
	e, dsn, err := engineOf(where)
	if err != nil {
		return nil, err
	}
	name := where
	if e == sqlite {
		if err := os.MkdirAll(filepath.Dir(where), 0o700); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		// Create the file ourselves so that it is private from the start.
		if f, err := os.OpenFile(where, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			f.Close()
		}
	} else if u, err := url.Parse(where); err == nil {
		name = u.Redacted()
	}
	db, err := sql.Open(e.driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", name, err)
	}
	s := &Store{db: db, e: e, now: time.Now, path: name}
	if err := e.migrate(ctx, db); err != nil {
		db.Close()
		return nil, s.damaged(fmt.Errorf("inventory %s: %w", name, err))
	}
	return s, nil
}

// SchemaVersion is the version of the inventory this booted reads and
// writes.
func SchemaVersion() int { return len(sqliteMigrations) }

// Engine names the database the store is in: SQLite or PostgreSQL.
func (s *Store) Engine() string { return s.e.name }

// ErrDamaged is wrapped by the errors of a store whose file SQLite finds
// damaged.
var ErrDamaged = errors.New("the inventory's database is damaged")

// damaged names the file and says what to do when err is SQLite finding
// the database damaged.
func (s *Store) damaged(err error) error {
	if err == nil {
		return nil
	}
	m := err.Error()
	if s.e != sqlite || !strings.Contains(m, "malformed") && !strings.Contains(m, "not a database") && !strings.Contains(m, "corrupt") {
		return err
	}
	return fmt.Errorf("%w: %s: %v; restore it from a backup (a copy taken while no booted ran), or see what is wrong with: sqlite3 %s 'PRAGMA integrity_check'",
		ErrDamaged, s.path, err, s.path)
}

// Size is how many bytes the inventory takes: the file and its
// write-ahead log (SQLite), the database (PostgreSQL).
func (s *Store) Size(ctx context.Context) (int64, error) {
	if s.e == postgres {
		var n int64
		err := s.db.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
		return n, err
	}
	var n int64
	for _, p := range []string{s.path, s.path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Tx is one transaction: everything done through it is committed together.
type Tx struct {
	tx       *sql.Tx
	e        *engine
	ctx      context.Context
	now      time.Time
	writable bool
}

// Update runs fn in one write transaction, committed if fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, true, fn)
}

// View runs fn in one read-only transaction: a consistent snapshot that
// takes no write lock, so it never waits for a writer. Writes through its
// Tx return ErrReadOnly.
func (s *Store) View(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, false, fn)
}

func (s *Store) run(ctx context.Context, writable bool, fn func(tx *Tx) error) (err error) {
	opts := &s.e.readOnly
	if writable {
		opts = nil
	}
	t, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return s.damaged(fmt.Errorf("inventory: %w", err))
	}
	if writable && s.e.lockWrites != "" {
		if _, err := t.ExecContext(ctx, s.e.lockWrites); err != nil {
			t.Rollback()
			return fmt.Errorf("inventory: %w", err)
		}
	}
	defer func() {
		err = s.damaged(err)
	}()
	defer func() {
		if p := recover(); p != nil {
			t.Rollback()
			panic(p)
		}
		if err != nil || !writable {
			t.Rollback()
			return
		}
		err = t.Commit()
	}()
	return fn(&Tx{tx: t, e: s.e, ctx: ctx, now: s.now(), writable: writable})
}

func (tx *Tx) write() error {
	if !tx.writable {
		return ErrReadOnly
	}
	return nil
}

// Hosts returns the hosts of env by name.
func (s *Store) Hosts(ctx context.Context, env string) (hs []Host, err error) {
	err = s.View(ctx, func(tx *Tx) error { hs, err = tx.Hosts(env); return err })
	return hs, err
}

// Host returns one host, or ErrNotFound.
func (s *Store) Host(ctx context.Context, env, name string) (h Host, err error) {
	err = s.View(ctx, func(tx *Tx) error { h, err = tx.Host(env, name); return err })
	return h, err
}

// Get reads a value stored with Put (see Tx.Get).
func (s *Store) Get(ctx context.Context, env, key string, v any) (found bool, err error) {
	err = s.View(ctx, func(tx *Tx) error { found, err = tx.Get(env, key, v); return err })
	return found, err
}

// List reads the values stored under the keys of env that begin with
// prefix (see Tx.List).
func (s *Store) List(ctx context.Context, env, prefix string) (m map[string]json.RawMessage, err error) {
	err = s.View(ctx, func(tx *Tx) error { m, err = tx.List(env, prefix); return err })
	return m, err
}

// PutAll stores each value (as JSON) under its key for env, in one
// transaction (see Tx.Put).
func (s *Store) PutAll(ctx context.Context, env string, kv map[string]any) error {
	if len(kv) == 0 {
		return nil
	}
	return s.Update(ctx, func(tx *Tx) error {
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			if err := tx.Put(env, k, kv[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Advance moves a host to state to by the lifecycle's path (see Tx.Advance).
func (s *Store) Advance(ctx context.Context, env, name string, to State, reason string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.Advance(env, name, to, reason) })
}

// Events returns the last limit events of env (of one host if host is set),
// oldest first.
func (s *Store) Events(ctx context.Context, env, host string, limit int) ([]Event, error) {
	if host != "" {
		return s.events(ctx, `env = ? AND host = ?`, env, host, limit)
	}
	return s.events(ctx, `env = ?`, env, limit)
}

// EventsOfKind returns the last limit events of env of one kind (an
// alert's), oldest first, however many events of other kinds came since.
func (s *Store) EventsOfKind(ctx context.Context, env, kind string, limit int) ([]Event, error) {
	return s.events(ctx, `env = ? AND kind = ?`, env, kind, limit)
}

// events returns the last events where where holds (its arguments, then
// the limit), oldest first.
func (s *Store) events(ctx context.Context, where string, args ...any) ([]Event, error) {
	rows, err := s.query(ctx, `SELECT id, time, env, host, kind, from_state, to_state, detail FROM events WHERE `+where+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Env, &e.Host, &e.Kind, &e.From, &e.To, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, t)
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, rows.Err()
}

// Counters returns the counters of env.
func (s *Store) Counters(ctx context.Context, env string) (map[string]int64, error) {
	rows, err := s.query(ctx, `SELECT name, value FROM counters WHERE env = ?`, env)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, rows.Err()
}

// Transition moves a host to state to in one step, recording why; a move
// the lifecycle does not allow directly is refused with a *TransitionError.
func (s *Store) Transition(ctx context.Context, env, name string, to State, reason string) error {
	return s.Update(ctx, func(tx *Tx) error { return tx.Transition(env, name, to, reason) })
}

// Transition moves a recorded host to state to in one step (see
// Store.Transition).
func (tx *Tx) Transition(env, name string, to State, reason string) error {
	h, err := tx.Host(env, name)
	if err != nil {
		return err
	}
	if h.State == to {
		return nil
	}
	if !CanMove(h.State, to) {
		return &TransitionError{Host: name, From: h.State, To: to}
	}
	return tx.step(h, to, reason)
}

// Advance moves a host to state to by the lifecycle's path (see Path): each
// step is recorded as an event, reason goes with the last one. A host that
// is not recorded yet is recorded in to, if a host may start there. A move
// with no legal path is refused with a *TransitionError and changes
// nothing. Moving a host to the state it is in does nothing, but for a
// failed host's new reason, which replaces the old one.
func (tx *Tx) Advance(env, name string, to State, reason string) error {
	if err := tx.write(); err != nil {
		return err
	}
	if !to.Valid() {
		return fmt.Errorf("host %s: unknown state %q", name, to)
	}
	h, err := tx.Host(env, name)
	if errors.Is(err, ErrNotFound) {
		if !initial[to] {
			return &TransitionError{Host: name, To: to}
		}
		return tx.save(Host{Env: env, Name: name, State: to, Reason: reason}, Host{}, false)
	}
	if err != nil {
		return err
	}
	if h.State == to {
		if to == Failed && reason != "" && reason != h.Reason { // failed again, for another reason
			h.Reason = reason
			return tx.save(h, h, true)
		}
		return nil
	}
	path, err := Path(name, h.State, to)
	if err != nil {
		return err
	}
	for i, st := range path {
		why := ""
		if i == len(path)-1 {
			why = reason
		}
		if err := tx.step(h, st, why); err != nil {
			return err
		}
		h.State, h.Reason = st, why
	}
	return nil
}

// step moves h (as recorded) to st.
func (tx *Tx) step(h Host, st State, reason string) error {
	old := h
	h.State, h.Reason = st, reason
	return tx.save(h, old, true)
}

const hostCols = `env, name, role, provider, provider_id, addr, port, mac, host_key, state, reason, attrs, since, updated`

func scanHost(sc interface{ Scan(...any) error }) (Host, error) {
	var h Host
	var port, since, updated, attrs, state any
	err := sc.Scan(&h.Env, &h.Name, &h.Role, &h.Provider, &h.ProviderID, &h.Addr, &port, &h.MAC, &h.HostKey, &state, &h.Reason, &attrs, &since, &updated)
	if err != nil {
		return h, err
	}
	// A damaged row is read as far as it can be, and says what is wrong.
	var bad []string
	num := func(v any, field string) int64 {
		n, ok := v.(int64)
		if !ok && v != nil {
			bad = append(bad, fmt.Sprintf("%s %v is not a number", field, v))
		}
		return n
	}
	h.Port = int(num(port, "port"))
	h.Since, h.Updated = time.Unix(0, num(since, "since")), time.Unix(0, num(updated, "updated"))
	st, _ := state.(string)
	if h.State = State(st); !h.State.Valid() {
		bad = append(bad, fmt.Sprintf("state %q is not a state", st))
	}
	if a, _ := attrs.(string); a != "" && a != "{}" {
		if err := json.Unmarshal([]byte(a), &h.Attrs); err != nil {
			bad = append(bad, fmt.Sprintf("attributes unreadable (%v)", err))
		}
	}
	if len(bad) > 0 {
		h.Damaged = strings.Join(bad, "; ")
	}
	return h, nil
}

// Hosts returns the hosts of env by name.
func (tx *Tx) Hosts(env string) ([]Host, error) {
	rows, err := tx.query(`SELECT `+hostCols+` FROM hosts WHERE env = ? ORDER BY name`, env)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// Host returns one host, or an error wrapping ErrNotFound.
func (tx *Tx) Host(env, name string) (Host, error) {
	h, err := scanHost(tx.queryRow(`SELECT `+hostCols+` FROM hosts WHERE env = ? AND name = ?`, env, name))
	if errors.Is(err, sql.ErrNoRows) {
		return h, fmt.Errorf("host %s of %s: %w", name, env, ErrNotFound)
	}
	return h, err
}

// Modify changes one host's fields (role, address, key, ...) through fn,
// creating the host when it is not there yet: in state Requested, or in
// the state fn sets if a host may start there. The state of a recorded
// host changes only through Advance or Transition: fn changing it is
// refused with ErrStateByModify.
func (tx *Tx) Modify(env, name string, fn func(h *Host) error) error {
	if err := tx.write(); err != nil {
		return err
	}
	old, err := tx.Host(env, name)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	h := old
	if !exists {
		h = Host{Env: env, Name: name, State: Requested}
	}
	h.Attrs = cloneMap(old.Attrs)
	if err := fn(&h); err != nil {
		return err
	}
	h.Env, h.Name = env, name
	if exists && h.State != old.State {
		return fmt.Errorf("host %s: %s → %s: %w", name, old.State, h.State, ErrStateByModify)
	}
	if !exists && !initial[h.State] {
		return &TransitionError{Host: name, To: h.State}
	}
	return tx.save(h, old, exists)
}

// save writes h, recording a state change from old as an event.
func (tx *Tx) save(h, old Host, exists bool) error {
	if err := tx.write(); err != nil {
		return err
	}
	name, env := h.Name, h.Env
	if !h.State.Valid() {
		return fmt.Errorf("host %s: unknown state %q", name, h.State)
	}
	if !exists || old.State != h.State {
		h.Since = tx.now
		if h.State != Failed {
			if h.Reason == old.Reason {
				h.Reason = ""
			}
		}
		from := old.State
		if !exists {
			from = ""
		}
		if err := tx.Record(Event{Env: env, Host: name, Kind: "state", From: from, To: h.State, Detail: h.Reason}); err != nil {
			return err
		}
	}
	h.Updated = tx.now
	attrs, _ := json.Marshal(h.Attrs)
	if h.Attrs == nil {
		attrs = []byte("{}")
	}
	_, err := tx.exec(`INSERT INTO hosts (`+hostCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (env, name) DO UPDATE SET role=excluded.role, provider=excluded.provider, provider_id=excluded.provider_id,
		addr=excluded.addr, port=excluded.port, mac=excluded.mac, host_key=excluded.host_key, state=excluded.state, reason=excluded.reason,
		attrs=excluded.attrs, since=excluded.since, updated=excluded.updated`,
		h.Env, h.Name, h.Role, h.Provider, h.ProviderID, h.Addr, h.Port, h.MAC, h.HostKey, string(h.State), h.Reason, string(attrs), h.Since.UnixNano(), h.Updated.UnixNano())
	if err != nil {
		return fmt.Errorf("inventory: host %s: %w", name, err)
	}
	return nil
}

// Forget removes a host's record; its events stay.
func (tx *Tx) Forget(env, name, why string) error {
	if err := tx.write(); err != nil {
		return err
	}
	for _, q := range []string{`DELETE FROM hosts WHERE env = ? AND name = ?`, `DELETE FROM host_attrs WHERE env = ? AND host = ?`, `DELETE FROM pools WHERE env = ? AND host = ?`} {
		if _, err := tx.exec(q, env, name); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
	}
	return tx.Record(Event{Env: env, Host: name, Kind: "forgotten", Detail: why})
}

// Record appends an event.
func (tx *Tx) Record(e Event) error {
	if err := tx.write(); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = tx.now
	}
	var id int64
	err := tx.queryRow(`INSERT INTO events (time, env, host, kind, from_state, to_state, detail) VALUES (?,?,?,?,?,?,?) RETURNING id`,
		e.Time.UnixNano(), e.Env, e.Host, e.Kind, string(e.From), string(e.To), e.Detail).Scan(&id)
	if err != nil {
		return fmt.Errorf("inventory: event: %w", err)
	}
	if id%pruneEvery == 0 {
		return tx.pruneEvents(e.Env)
	}
	return nil
}

// Events are pruned (every pruneEvery events recorded) to the newest
// maxEvents of an environment and to those younger than maxEventAge: junk
// callbacks, each an event, cannot grow the inventory without bound.
var (
	pruneEvery  int64 = 1000
	maxEvents         = 100_000
	maxEventAge       = 90 * 24 * time.Hour
)

func (tx *Tx) pruneEvents(env string) error {
	_, err := tx.exec(`DELETE FROM events WHERE env = ? AND (time < ? OR id < (
		SELECT id FROM events WHERE env = ? ORDER BY id DESC LIMIT 1 OFFSET ?))`,
		env, tx.now.Add(-maxEventAge).UnixNano(), env, maxEvents-1)
	if err != nil {
		return fmt.Errorf("inventory: pruning events: %w", err)
	}
	return nil
}

// Count adds n to a counter of env.
func (tx *Tx) Count(env, name string, n int64) error {
	if err := tx.write(); err != nil {
		return err
	}
	_, err := tx.exec(`INSERT INTO counters (env, name, value) VALUES (?,?,?)
		ON CONFLICT (env, name) DO UPDATE SET value = counters.value + excluded.value`, env, name, n)
	if err != nil {
		return fmt.Errorf("inventory: counter: %w", err)
	}
	return nil
}

// Get reads a value stored with Put into v; found is false when there is none.
func (tx *Tx) Get(env, key string, v any) (found bool, err error) {
	var s string
	err = tx.queryRow(`SELECT value FROM kv WHERE env = ? AND key = ?`, env, key).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inventory: %w", err)
	}
	return true, json.Unmarshal([]byte(s), v)
}

// Put stores v (as JSON) under key for env.
func (tx *Tx) Put(env, key string, v any) error {
	if err := tx.write(); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = tx.exec(`INSERT INTO kv (env, key, value) VALUES (?,?,?)
		ON CONFLICT (env, key) DO UPDATE SET value = excluded.value`, env, key, string(b))
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

// Delete removes the value stored under key for env.
func (tx *Tx) Delete(env, key string) error {
	if err := tx.write(); err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM kv WHERE env = ? AND key = ?`, env, key); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return nil
}

// List returns the values stored under the keys of env that begin with
// prefix, by key.
func (tx *Tx) List(env, prefix string) (map[string]json.RawMessage, error) {
	rows, err := tx.query(`SELECT key, value FROM kv WHERE env = ? AND substr(key, 1, ?) = ? ORDER BY key`, env, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
		out[k] = json.RawMessage(v)
	}
	return out, rows.Err()
}

func (tx *Tx) exec(q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(tx.ctx, tx.e.bind(q), args...)
}

func (tx *Tx) query(q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(tx.ctx, tx.e.bind(q), args...)
}

func (tx *Tx) queryRow(q string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(tx.ctx, tx.e.bind(q), args...)
}

// query runs q outside a transaction.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.e.bind(q), args...)
}

// Now is the time of the transaction.
func (tx *Tx) Now() time.Time { return tx.now }

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Failed returns the hosts an operation (by its title) did not succeed on
// last time: what BOOTED_RETRY=failed runs it on.
func (s *Store) Failed(ctx context.Context, env, op string) ([]string, error) {
	var names []string
	_, err := s.Get(ctx, env, "failed/"+op, &names)
	return names, err
}

// SetFailed keeps the hosts op did not succeed on (none: it succeeded
// everywhere).
func (s *Store) SetFailed(ctx context.Context, env, op string, names []string) error {
	return s.Update(context.WithoutCancel(ctx), func(tx *Tx) error { return tx.Put(env, "failed/"+op, names) })
}
