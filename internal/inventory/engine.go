package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "modernc.org/sqlite"             // the database/sql driver "sqlite"
)

// An engine is what differs between the databases the inventory can live
// in: SQLite (a file, the default) and PostgreSQL (a server several
// controllers share). The queries are written once, in the SQL both
// accept, with ? for their arguments.
type engine struct {
	name   string
	driver string
	// migrations are the schema in this engine's SQL (see migrate).
	migrations []string
	// version and setVersion read and set the schema's version;
	// prepare runs first (on PostgreSQL it makes the version's table).
	prepare, version, setVersion string
	// lockMigrations, run first in the migrating transaction, keeps other
	// processes out until it commits ("": the transaction is immediate).
	lockMigrations string
	// lockWrites, run first in every write transaction, makes writers
	// take turns as SQLite's one writer does: a transaction that reads
	// a host and writes it back never loses another's write.
	lockWrites string
	// readOnly is how a read-only transaction begins.
	readOnly sql.TxOptions
	// greatest is the function of two values that returns the larger.
	greatest string
	// numbered: arguments are $1, $2, … instead of ?.
	numbered bool
}

var sqlite = &engine{
	name: "SQLite", driver: "sqlite",
	migrations: sqliteMigrations,
	version:    "PRAGMA user_version", setVersion: "PRAGMA user_version = %d",
	readOnly: sql.TxOptions{ReadOnly: true},
	greatest: "max",
}

// sqliteMigrations: migration i takes a file at version i to version i+1
// (its version is PRAGMA user_version; a file from before versions has its
// tables and version 0, which the first migration, all CREATE … IF NOT
// EXISTS, takes as it is). Add a migration; never change one that shipped.
var sqliteMigrations = []string{
	// 1: the tables as of 2026-12-06.
	`CREATE TABLE IF NOT EXISTS hosts (
	env TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL DEFAULT '',
	provider TEXT NOT NULL DEFAULT '', provider_id TEXT NOT NULL DEFAULT '',
	addr TEXT NOT NULL DEFAULT '', port INTEGER NOT NULL DEFAULT 0, mac TEXT NOT NULL DEFAULT '',
	host_key TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
	attrs TEXT NOT NULL DEFAULT '{}', since INTEGER NOT NULL, updated INTEGER NOT NULL,
	PRIMARY KEY (env, name));
CREATE TABLE IF NOT EXISTS events (
	id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, env TEXT NOT NULL,
	host TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL, from_state TEXT NOT NULL DEFAULT '',
	to_state TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS events_env_host ON events (env, host, id);
CREATE INDEX IF NOT EXISTS events_env_kind ON events (env, kind, id);
CREATE TABLE IF NOT EXISTS counters (
	env TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (env, name));
CREATE TABLE IF NOT EXISTS kv (
	env TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (env, key));
CREATE TABLE IF NOT EXISTS host_attrs (
	env TEXT NOT NULL, host TEXT NOT NULL, key TEXT NOT NULL, pos INTEGER NOT NULL, value TEXT NOT NULL,
	PRIMARY KEY (env, host, key, pos));
CREATE TABLE IF NOT EXISTS pools (
	env TEXT NOT NULL, pool TEXT NOT NULL, host TEXT NOT NULL, PRIMARY KEY (env, pool, host));
CREATE TABLE IF NOT EXISTS enrollments (
	env TEXT NOT NULL, name TEXT NOT NULL,
	token_hash TEXT NOT NULL DEFAULT '', issued INTEGER NOT NULL DEFAULT 0, expires INTEGER NOT NULL DEFAULT 0,
	from_addr TEXT NOT NULL DEFAULT '',
	key TEXT NOT NULL DEFAULT '', key_addr TEXT NOT NULL DEFAULT '', pinned INTEGER NOT NULL DEFAULT 0,
	last_signed INTEGER NOT NULL DEFAULT 0, used_hash TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (env, name));`,
	// 2: a deleted instance's pinned key is revoked (issue 27).
	`ALTER TABLE enrollments ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;`,
}

// migrationLock is the PostgreSQL advisory lock a migration holds, and
// writeLock the one every write transaction holds (two keys, so that a
// migration's wait shows as such in pg_locks).
const (
	migrationLock = 0x626f6f746564_01 // "booted", 1
	writeLock     = 0x626f6f746564_02
)

var postgres = &engine{
	name: "PostgreSQL", driver: "pgx",
	migrations:     postgresMigrations,
	prepare:        `CREATE TABLE IF NOT EXISTS booted_schema (version INTEGER NOT NULL)`,
	version:        `SELECT coalesce(max(version), 0) FROM booted_schema`,
	setVersion:     `DELETE FROM booted_schema; INSERT INTO booted_schema (version) VALUES (%d)`,
	lockMigrations: fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, migrationLock),
	lockWrites:     fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, writeLock),
	// a snapshot, as SQLite's readers have
	readOnly: sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	greatest: "greatest",
	numbered: true,
}

// postgresMigrations are sqliteMigrations in PostgreSQL's SQL, version for
// version: 64-bit numbers (times are nanoseconds), byte order for names
// (COLLATE "C": hosts list as SQLite lists them, whatever the server's
// locale). Add a migration to both lists at once.
var postgresMigrations = []string{
	// 1: the tables as of 2026-12-06.
	`CREATE TABLE hosts (
	env TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, role TEXT NOT NULL DEFAULT '',
	provider TEXT NOT NULL DEFAULT '', provider_id TEXT NOT NULL DEFAULT '',
	addr TEXT NOT NULL DEFAULT '', port BIGINT NOT NULL DEFAULT 0, mac TEXT NOT NULL DEFAULT '',
	host_key TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
	attrs TEXT NOT NULL DEFAULT '{}', since BIGINT NOT NULL, updated BIGINT NOT NULL,
	PRIMARY KEY (env, name));
CREATE TABLE events (
	id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, time BIGINT NOT NULL, env TEXT COLLATE "C" NOT NULL,
	host TEXT COLLATE "C" NOT NULL DEFAULT '', kind TEXT COLLATE "C" NOT NULL, from_state TEXT NOT NULL DEFAULT '',
	to_state TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
CREATE INDEX events_env_host ON events (env, host, id);
CREATE INDEX events_env_kind ON events (env, kind, id);
CREATE TABLE counters (
	env TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (env, name));
CREATE TABLE kv (
	env TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL, PRIMARY KEY (env, key));
CREATE TABLE host_attrs (
	env TEXT COLLATE "C" NOT NULL, host TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, pos BIGINT NOT NULL, value TEXT NOT NULL,
	PRIMARY KEY (env, host, key, pos));
CREATE TABLE pools (
	env TEXT COLLATE "C" NOT NULL, pool TEXT COLLATE "C" NOT NULL, host TEXT COLLATE "C" NOT NULL, PRIMARY KEY (env, pool, host));
CREATE TABLE enrollments (
	env TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL,
	token_hash TEXT NOT NULL DEFAULT '', issued BIGINT NOT NULL DEFAULT 0, expires BIGINT NOT NULL DEFAULT 0,
	from_addr TEXT NOT NULL DEFAULT '',
	key TEXT NOT NULL DEFAULT '', key_addr TEXT NOT NULL DEFAULT '', pinned BIGINT NOT NULL DEFAULT 0,
	last_signed BIGINT NOT NULL DEFAULT 0, used_hash TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (env, name));`,
	// 2: a deleted instance's pinned key is revoked (issue 27).
	`ALTER TABLE enrollments ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;`,
}

// IsURL reports whether where names a database server (a postgres:// or
// postgresql:// URL) rather than a file.
func IsURL(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://")
}

// CheckURL refuses a PostgreSQL URL that would put a secret on a command
// line or in the environment (a password), or that would send the
// inventory (tokens' hashes, pinned keys, everything about the hosts) in
// clear or to a server it has not verified: a server that is not on this
// machine (a Unix socket or loopback) must be reached with sslmode
// verify-full. It says what to do instead.
func CheckURL(where string) error {
	u, err := url.Parse(where)
	if err != nil { // (url's error quotes the URL, password and all)
		return errors.New("inventory URL: not a URL (use postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full)")
	}
	q := u.Query()
	if _, set := u.User.Password(); set || q.Has("password") {
		return errors.New("inventory URL: a password in the URL would show in the environment and in process listings; put it in a passfile (PGPASSFILE, 0600, or ~/.pgpass) or use a client certificate (sslcert, sslkey)")
	}
	if strings.Trim(u.Path, "/") == "" && q.Get("dbname") == "" {
		return fmt.Errorf("inventory URL %s: name the database, as in postgres://USER@HOST/booted", u.Redacted())
	}
	hosts := q.Get("host")
	if hosts == "" {
		hosts = u.Host
	}
	for _, h := range strings.Split(hosts, ",") {
		if h == "" || strings.HasPrefix(h, "/") {
			continue // the default (a Unix socket) or a socket's directory
		}
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.Trim(h, "[]")
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			continue
		}
		if m := q.Get("sslmode"); m != "verify-full" {
			return fmt.Errorf("inventory URL %s: the server %s is not on this machine, and sslmode is %q: use sslmode=verify-full (with sslrootcert naming its CA), so that the inventory is neither sent in clear nor to a server that is not the one named", u.Redacted(), h, m)
		}
	}
	return nil
}

// engineOf returns the engine and data source name for where: a
// postgres:// URL, or a file's path.
func engineOf(where string) (*engine, string, error) {
	if IsURL(where) {
		if err := CheckURL(where); err != nil {
			return nil, "", err
		}
		return postgres, where, nil
	}
	if scheme, _, ok := strings.Cut(where, "://"); ok && !strings.Contains(scheme, "/") {
		return nil, "", fmt.Errorf("inventory at %s://…: booted keeps its inventory in a SQLite file (a path) or on PostgreSQL (postgres://USER@HOST/DATABASE), not %s", scheme, scheme)
	}
	return sqlite, "file:" + where + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate", nil
}

// bind writes q's arguments as this engine numbers them: ? as $1, $2, …
// on PostgreSQL (no query of the inventory has a ? inside a literal).
func (e *engine) bind(q string) string {
	if !e.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// migrate brings the database to the engine's version, one migration per
// transaction (with its version: a database is at one version or the
// next, never between); a database at it is only read. One from a newer
// booted is refused: this one would not know its columns.
func (e *engine) migrate(ctx context.Context, db *sql.DB) error {
	if e.prepare != "" { // under the migrations' lock: two CREATE … IF NOT EXISTS at once can both create
		err := e.locked(ctx, db, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, e.prepare)
			return err
		})
		if err != nil {
			return err
		}
	}
	var v int
	if err := db.QueryRowContext(ctx, e.version).Scan(&v); err != nil {
		return err
	}
	for ; v < len(e.migrations); v++ {
		err := e.locked(ctx, db, func(tx *sql.Tx) error {
			var cur int // another process may have migrated while this one waited
			if err := tx.QueryRowContext(ctx, e.version).Scan(&cur); err != nil {
				return err
			}
			if cur > v {
				v = cur - 1
				return nil
			}
			if _, err := tx.ExecContext(ctx, e.migrations[v]); err != nil && !(e == sqlite && v == 1 && strings.Contains(err.Error(), "duplicate column name")) {
				// (a file made on 2026-12-07 before versions has revoked already)
				return fmt.Errorf("schema version %d to %d: %w", v, v+1, err)
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf(e.setVersion, v+1))
			return err
		})
		if err != nil {
			return err
		}
	}
	if v > len(e.migrations) {
		return fmt.Errorf("schema version %d, made by a newer booted (this one reads version %d): use that booted, or restore the database from a backup", v, len(e.migrations))
	}
	return nil
}

// locked runs fn in a transaction that keeps other processes' migrations
// out until it commits (SQLite's is immediate: _txlock; PostgreSQL's
// takes lockMigrations first), committed if fn returns nil.
func (e *engine) locked(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if e.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, e.lockMigrations); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
