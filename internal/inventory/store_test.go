package inventory

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"booted/internal/pgtest"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCanMove(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		ok       bool
	}{
		{Requested, Provisioning, true},
		{Booting, Booted, true},
		{Booted, Ready, true},
		{Ready, Serving, true},
		{Serving, Draining, true},
		{Draining, Stopped, true},
		{Stopped, Terminated, true},
		{Booting, Failed, true},
		{Failed, Booting, true},
		{Booted, Booted, true},
		{Requested, Serving, false},
		{Booting, Ready, false},
		{Serving, Stopped, false},
		{Terminated, Serving, false},
		{Stopped, Ready, false},
	} {
		if got := CanMove(tc.from, tc.to); got != tc.ok {
			t.Errorf("CanMove(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
	for _, s := range States {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
}

func TestStore_LifecycleAndEvents(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := openTest(t, where)
		err := s.Update(ctx, func(tx *Tx) error {
			return tx.Modify("local", "w1", func(h *Host) error { h.Role, h.State = "workers", Booting; return nil })
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Transition(ctx, "local", "w1", Serving, ""); err == nil {
			t.Fatal("booting → serving was allowed")
		} else {
			var te *TransitionError
			if !errors.As(err, &te) || te.From != Booting {
				t.Fatalf("err = %v", err)
			}
		}
		h, err := s.Host(ctx, "local", "w1")
		if err != nil || h.State != Booting || h.Role != "workers" {
			t.Fatalf("refused change altered the host: %+v %v", h, err)
		}
		for _, st := range []State{Booted, Ready} {
			if err := s.Transition(ctx, "local", "w1", st, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Transition(ctx, "local", "w1", Failed, "no ping reply"); err != nil {
			t.Fatal(err)
		}
		h, _ = s.Host(ctx, "local", "w1")
		if h.State != Failed || h.Reason != "no ping reply" {
			t.Fatalf("host %+v", h)
		}
		if err := s.Transition(ctx, "local", "w1", Booting, ""); err != nil {
			t.Fatal(err)
		}
		if h, _ = s.Host(ctx, "local", "w1"); h.Reason != "" {
			t.Errorf("reason kept after leaving failed: %q", h.Reason)
		}
		evs, err := s.Events(ctx, "local", "w1", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%s>%s", e.From, e.To))
		}
		want := ">booting booting>booted booted>ready ready>failed failed>booting"
		if fmt.Sprint(got) != "["+want+"]" {
			t.Errorf("events %v, want %s", got, want)
		}
		if _, err := s.Host(ctx, "local", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("err = %v", err)
		}
		err = s.Update(ctx, func(tx *Tx) error {
			return tx.Modify("local", "w9", func(h *Host) error { h.State = Serving; return nil })
		})
		if err == nil {
			t.Error("a host was first recorded as serving")
		}
	})
}

// Ensure that two handles on one inventory (as the CLI and the daemon
// have, or two controllers on one PostgreSQL) can write at once without
// "database is locked" and without losing updates: a transaction that
// reads a value and writes it back (as Modify does a host) never loses
// another's write.
func TestStore_ConcurrentWriters(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		a, b := openTest(t, where), openTest(t, where)
		var wg sync.WaitGroup
		errs := make(chan error, 400)
		for i, s := range []*Store{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 100; j++ {
					errs <- s.Update(ctx, func(tx *Tx) error {
						var n int
						if _, err := tx.Get("local", "read-and-written", &n); err != nil {
							return err
						}
						if err := tx.Put("local", "read-and-written", n+1); err != nil {
							return err
						}
						if err := tx.Count("local", "n", 1); err != nil {
							return err
						}
						return tx.Modify("local", fmt.Sprintf("h%d-%d", i, j), func(h *Host) error { h.State = Booting; return nil })
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		c, _ := a.Counters(ctx, "local")
		hs, _ := b.Hosts(ctx, "local")
		var n int
		a.Get(ctx, "local", "read-and-written", &n)
		if c["n"] != 400 || len(hs) != 400 || n != 400 {
			t.Errorf("counter %d, hosts %d, a value read and written back %d; want 400 each", c["n"], len(hs), n)
		}
	})
}

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		want     string // states after from, or "error"
	}{
		{Booted, Serving, "[ready serving]"},
		{Failed, Serving, "[ready serving]"},
		{Serving, Stopped, "[draining stopped]"},
		{Serving, Terminated, "[draining stopped terminated]"},
		{Serving, Ready, "[draining ready]"},
		{Draining, Serving, "[serving]"},
		{Ready, Terminated, "[terminated]"},
		{Booting, Stopped, "[stopped]"},
		{Serving, Serving, "[]"},
		{Booting, Serving, "error"}, // it must phone home and be checked first
		{Requested, Ready, "error"},
		{Terminated, Serving, "error"},
		{Stopped, Ready, "error"},
	} {
		got, err := Path("h", tc.from, tc.to)
		s := fmt.Sprint(got)
		if err != nil {
			var te *TransitionError
			if !errors.As(err, &te) || te.From != tc.from || te.To != tc.to {
				t.Errorf("Path(%s, %s): err %v, want a *TransitionError", tc.from, tc.to, err)
			}
			s = "error"
		}
		if s != tc.want {
			t.Errorf("Path(%s, %s) = %s, want %s", tc.from, tc.to, s, tc.want)
		}
	}
}

// Ensure that Advance walks the legal path with one event a step, refuses
// a move with none and changes nothing then, and that the state of a
// recorded host cannot be changed by Modify.
func TestTx_Advance(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := openTest(t, where)
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(s.Advance(ctx, "e", "w1", Booting, ""))
		if err := s.Advance(ctx, "e", "w1", Serving, "x"); err == nil {
			t.Fatal("booting → serving was allowed")
		}
		must(s.Transition(ctx, "e", "w1", Booted, ""))
		must(s.Advance(ctx, "e", "w1", Serving, ""))
		must(s.Advance(ctx, "e", "w1", Serving, "")) // already there: nothing
		must(s.Advance(ctx, "e", "w1", Terminated, "image:del"))
		h, err := s.Host(ctx, "e", "w1")
		if err != nil || h.State != Terminated {
			t.Fatalf("host %+v, %v", h, err)
		}
		evs, err := s.Events(ctx, "e", "w1", 100)
		must(err)
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%s>%s", e.From, e.To))
		}
		want := "[>booting booting>booted booted>ready ready>serving serving>draining draining>stopped stopped>terminated]"
		if fmt.Sprint(got) != want {
			t.Errorf("events %v, want %s", got, want)
		}
		if evs[len(evs)-1].Detail != "image:del" {
			t.Errorf("last step's detail %q, want the reason", evs[len(evs)-1].Detail)
		}
		err = s.Update(ctx, func(tx *Tx) error {
			return tx.Modify("e", "w1", func(h *Host) error { h.State = Booting; return nil })
		})
		if !errors.Is(err, ErrStateByModify) {
			t.Errorf("Modify changing the state: err = %v, want ErrStateByModify", err)
		}
		if err := s.Advance(ctx, "e", "new", Serving, ""); err == nil {
			t.Error("a host was first recorded as serving")
		}
	})
}

// Ensure that View sees the data and refuses writes.
func TestStore_View(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := openTest(t, where)
		if err := s.Advance(ctx, "e", "w1", Booting, ""); err != nil {
			t.Fatal(err)
		}
		err := s.View(ctx, func(tx *Tx) error {
			h, err := tx.Host("e", "w1")
			if err != nil || h.State != Booting {
				t.Errorf("view: %+v %v", h, err)
			}
			return tx.Put("e", "k", 1)
		})
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("write in View: err = %v, want ErrReadOnly", err)
		}
		if found, _ := s.Get(ctx, "e", "k", new(int)); found {
			t.Error("a write in View was kept")
		}
	})
}

// Ensure one damaged row (unreadable attributes, a bad state or number)
// is listed as damaged with the reason, the others read whole, and that it
// can be forgotten.
func TestStore_DamagedRow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "booted.db")
	s := openTest(t, path)
	for _, n := range []string{"w1", "w2", "w3", "w4"} {
		if err := s.Advance(ctx, "e", n, Booting, ""); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE hosts SET attrs = '{not json' WHERE name = 'w2'`,
		`UPDATE hosts SET state = 'exploded' WHERE name = 'w3'`,
		`UPDATE hosts SET since = 'yesterday' WHERE name = 'w4'`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := s.Hosts(ctx, "e")
	if err != nil || len(hs) != 4 {
		t.Fatalf("hosts: %d, %v", len(hs), err)
	}
	want := map[string]string{"w1": "", "w2": "attributes unreadable", "w3": `state "exploded" is not a state`, "w4": "since yesterday is not a number"}
	for _, h := range hs {
		if w := want[h.Name]; (w == "") != (h.Damaged == "") || !strings.Contains(h.Damaged, w) {
			t.Errorf("%s: damaged %q, want %q", h.Name, h.Damaged, w)
		}
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.Forget("e", "w3", "hosts:clear") }); err != nil {
		t.Fatal(err)
	}
	if hs, _ := s.Hosts(ctx, "e"); len(hs) != 3 {
		t.Errorf("%d hosts after forgetting the damaged one", len(hs))
	}
}

// Ensure a damaged database file is named, with what to do.
func TestStore_DamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "booted.db")
	os.WriteFile(path, bytes.Repeat([]byte("this is not sqlite "), 512), 0o600)
	_, err := Open(context.Background(), path)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "PRAGMA integrity_check") {
		t.Errorf("err = %v", err)
	}
}

// List returns the values under a prefix, and only those; Delete removes one.
func TestStore_ListDelete(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		st, err := Open(ctx, where)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		err = st.Update(ctx, func(tx *Tx) error {
			for _, k := range []string{"keypair/alice/a", "keypair/alice/b", "keypair/alice_x/c", "keypair/bob/a"} {
				if err := tx.Put("e", k, k); err != nil {
					return err
				}
			}
			return tx.Put("other", "keypair/alice/z", "z")
		})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		st.View(ctx, func(tx *Tx) (err error) { got, err = tx.List("e", "keypair/alice/"); return })
		if len(got) != 2 || string(got["keypair/alice/b"]) != `"keypair/alice/b"` {
			t.Errorf("List = %v", got)
		}
		st.Update(ctx, func(tx *Tx) error { return tx.Delete("e", "keypair/alice/a") })
		st.View(ctx, func(tx *Tx) (err error) { got, err = tx.List("e", "keypair/alice/"); return })
		if len(got) != 1 {
			t.Errorf("after Delete: %v", got)
		}
	})
}

// Events are kept to the newest maxEvents of an environment and to those
// younger than maxEventAge, another environment's untouched; an alert is
// found by its kind however many events came after it.
func TestEvents_PrunedAndByKind(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		defer func(e int64, m int, a time.Duration) { pruneEvery, maxEvents, maxEventAge = e, m, a }(pruneEvery, maxEvents, maxEventAge)
		pruneEvery, maxEvents, maxEventAge = 10, 50, time.Hour
		ctx := context.Background()
		s, err := Open(ctx, where)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		record := func(env, kind string, at time.Time) {
			if err := s.Update(ctx, func(tx *Tx) error { return tx.Record(Event{Env: env, Kind: kind, Time: at}) }); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		record("e", "old", now.Add(-2*time.Hour))
		record("other", "kept", now)
		record("e", "alert.host-key-mismatch", now)
		for i := 0; i < 200; i++ {
			record("e", "callback.refused", now)
		}
		evs, err := s.Events(ctx, "e", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) > 50+10 || len(evs) < 50 {
			t.Errorf("%d events of e kept, want the newest 50 (up to 10 more between prunings)", len(evs))
		}
		for _, e := range evs {
			if e.Kind == "old" {
				t.Error("an event older than maxEventAge was kept")
			}
		}
		if o, _ := s.Events(ctx, "other", "", 10); len(o) != 1 {
			t.Errorf("another environment's events: %v", o)
		}
		// the alert itself went with the count; one recorded now is found
		// under 200 newer events
		record("e", "alert.host-key-mismatch", now)
		for i := 0; i < 30; i++ {
			record("e", "callback.refused", now)
		}
		if a, err := s.EventsOfKind(ctx, "e", "alert.host-key-mismatch", 10); err != nil || len(a) != 1 {
			t.Errorf("alerts by kind: %v %v", a, err)
		}
	})
}

// An inventory written before enrollments had the revoked column opens,
// gets the column, keeps its pins, and revokes.
func TestOpen_AddsColumnsToAnOlderFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "booted.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE enrollments (env TEXT NOT NULL, name TEXT NOT NULL,
	token_hash TEXT NOT NULL DEFAULT '', issued INTEGER NOT NULL DEFAULT 0, expires INTEGER NOT NULL DEFAULT 0,
	from_addr TEXT NOT NULL DEFAULT '', key TEXT NOT NULL DEFAULT '', key_addr TEXT NOT NULL DEFAULT '', pinned INTEGER NOT NULL DEFAULT 0,
	last_signed INTEGER NOT NULL DEFAULT 0, used_hash TEXT NOT NULL DEFAULT '', PRIMARY KEY (env, name));
	INSERT INTO enrollments (env, name, key, key_addr) VALUES ('e', 'w1', 'ssh-ed25519 AAAA', '10.0.0.1')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // and again, once it has it
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("opening an older inventory: %v", err)
		}
		var e Enrollment
		err = s.Update(ctx, func(tx *Tx) error {
			if err := tx.Revoke("e", "w1"); err != nil {
				return err
			}
			e, _, err = tx.Enrollment("e", "w1")
			return err
		})
		s.Close()
		if err != nil || e.Key != "ssh-ed25519 AAAA" || !e.Revoked {
			t.Fatalf("after opening: %+v %v", e, err)
		}
	}
}

// A new inventory is at this booted's schema version; ten processes'
// worth of opens at once of a new one all succeed (one migrates, the
// others wait and find it done); one from a newer booted is refused,
// saying so, and left as it was.
func TestOpen_SchemaVersions(t *testing.T) {
	onEngines(t, func(t *testing.T, where string) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make([]error, 10)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(ctx, where)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("open %d of a new inventory at once with nine others: %v", i, err)
			}
		}
		if v := schemaVersion(t, where, -1); v != SchemaVersion() {
			t.Errorf("schema version %d, want %d", v, SchemaVersion())
		}
		schemaVersion(t, where, 99)
		if _, err := Open(ctx, where); err == nil || !strings.Contains(err.Error(), "schema version 99, made by a newer booted") {
			t.Errorf("an inventory from a newer booted: %v", err)
		}
		if v := schemaVersion(t, where, -1); v != 99 {
			t.Errorf("the newer inventory's version is %d now", v)
		}
	})
}

// schemaVersion reads the schema version of the inventory at where as a
// user would (sqlite3, psql), setting it first to set unless that is -1.
func schemaVersion(t *testing.T, where string, set int) int {
	t.Helper()
	if IsURL(where) {
		if set >= 0 {
			pgtest.Exec(t, where, fmt.Sprintf("UPDATE booted_schema SET version = %d", set))
		}
		v, err := strconv.Atoi(pgtest.Exec(t, where, "SELECT version FROM booted_schema"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	db, err := sql.Open("sqlite", "file:"+where)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if set >= 0 {
		if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", set)); err != nil {
			t.Fatal(err)
		}
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// onEngines runs fn on each database the inventory can be in: a new
// SQLite file, and a new database on this package's PostgreSQL server.
func onEngines(t *testing.T, fn func(t *testing.T, where string)) {
	t.Run("SQLite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "booted.db")) })
	t.Run("PostgreSQL", func(t *testing.T) { fn(t, pgtest.URL(t)) })
}

func TestMain(m *testing.M) {
	if where := os.Getenv("BOOTED_TEST_LEASE"); where != "" {
		leaseHelper(where)
	}
	os.Exit(pgtest.Main(m))
}
