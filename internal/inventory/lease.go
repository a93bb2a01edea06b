package inventory

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A Lease makes one holder at a time of a named role among every process
// that opens the same inventory: the monitor daemon of an environment,
// run by several controllers, acts in the one that holds it. It is the
// database's own mechanism, not a consensus of booted's: a session-level
// advisory lock on PostgreSQL (on a connection of its own, let go of by
// the server when the connection ends, as when its process dies), and an
// flock of a file beside a SQLite inventory (let go of by the kernel).
type Lease struct {
	key    int64 // the advisory lock's (PostgreSQL)
	name   string
	holder string
	lost   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
	conn   *sql.Conn // PostgreSQL
	file   *os.File  // SQLite
}

// LeaseHolder is who holds a lease, as recorded when it was taken.
type LeaseHolder struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// leaseCheck is how often a held lease's connection is checked, and how
// often a waiting one tries again.
var leaseCheck = time.Second

// AcquireLease waits until it holds the lease name (for env) and returns
// it, or returns ctx's error. holder says who takes it (a host name and
// a PID), recorded for the others to show. Lost closes when the lease is
// no longer held (its connection failed): the holder must stop acting.
func (s *Store) AcquireLease(ctx context.Context, env, name, holder string) (*Lease, error) {
	return s.acquire(ctx, env, name, holder, true)
}

// Shared reports whether other machines may use this inventory at once
// (PostgreSQL): their locks of a file here do not keep them out.
func (s *Store) Shared() bool { return s.e == postgres }

// LockEnv takes env's operations lock in the database, for an inventory
// other machines share (see Shared): what an flock of a local file is
// on one machine. holder says which operation, where; the wait is ctx's.
// Unlike a lease's, its taking is not an event (every operation takes it).
func (s *Store) LockEnv(ctx context.Context, env, holder string) (*Lease, error) {
	return s.acquire(ctx, env, "operations", holder, false)
}

func (s *Store) acquire(ctx context.Context, env, name, holder string, event bool) (*Lease, error) {
	l := &Lease{key: leaseKey(env, name), name: name, holder: holder, lost: make(chan struct{}), done: make(chan struct{})}
	key := "lease/" + name
	retry := leaseCheck
	if !event { // an operation's lock: as often as the flock's
		retry = 100 * time.Millisecond
	}
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		ok, err := s.tryLease(ctx, l, env, name)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err() // the wait ended during a try (the driver says "bad connection")
		}
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.Put(env, key, LeaseHolder{Holder: holder, Since: tx.Now()}); err != nil || !event {
			return err
		}
		return tx.Record(Event{Env: env, Kind: "lease-taken", Detail: fmt.Sprintf("%s holds the lease %s", holder, name)})
	}); err != nil {
		l.release()
		return nil, err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = stop
	go l.watch(wctx)
	return l, nil
}

// tryLease takes the lease if it is free.
func (s *Store) tryLease(ctx context.Context, l *Lease, env, name string) (bool, error) {
	if s.e == postgres {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return false, fmt.Errorf("inventory: lease %s: %w", name, err)
		}
		// A holder whose machine dies sends nothing more: the server
		// must notice by itself that the connection is gone to let the
		// lock go, within about 10 s, not TCP's two hours (ignored on a
		// Unix socket, where the kernel tells it at once).
		if _, err := conn.ExecContext(ctx, `SET tcp_keepalives_idle = 3; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; SET tcp_user_timeout = 9000`); err != nil {
			conn.Close()
			return false, fmt.Errorf("inventory: lease %s: %w", name, err)
		}
		var ok bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil || !ok {
			conn.Close()
			if err != nil {
				return false, fmt.Errorf("inventory: lease %s: %w", name, err)
			}
			return false, nil
		}
		l.conn = conn
		return true, nil
	}
	path := filepath.Join(filepath.Dir(s.path), fmt.Sprintf(".lease-%s-%s", safeName(env), safeName(name)))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return false, fmt.Errorf("inventory: lease %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("inventory: lease %s: %w", name, err)
	}
	l.file = f
	return true, nil
}

// watch checks the lease's connection until it fails (lost) or the lease
// is released. An flock cannot be lost while its file is open.
func (l *Lease) watch(ctx context.Context) {
	defer close(l.done)
	if l.conn == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(leaseCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.conn.PingContext(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			close(l.lost)
			return
		}
	}
}

// Lost closes when the lease is no longer held.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release lets the lease go.
func (l *Lease) Release() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
	l.release()
}

func (l *Lease) release() {
	if l.conn != nil {
		// Unlocked at once (the server lets a closed connection's locks
		// go only when it has noticed: another waiter could miss it), then
		// closed, not put back in the pool.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
		cancel()
		l.conn.Raw(func(any) error { return driver.ErrBadConn })
		l.conn.Close()
		l.conn = nil
	}
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
}

// leaseKey is a lease's advisory lock key: its name's hash, in booted's
// range (the high byte 0x62) apart from migrationLock and writeLock.
func leaseKey(env, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(env + "\x00" + name))
	return int64(0x62<<56 | h.Sum64()>>8)
}

// safeName keeps a name to letters, digits, '-' and '.' for a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// Holder returns who took the lease name of env last (found false if no
// one ever did). It may have been let go of since.
func (s *Store) Holder(ctx context.Context, env, name string) (h LeaseHolder, found bool, err error) {
	found, err = s.Get(ctx, env, "lease/"+name, &h)
	return h, found, err
}
