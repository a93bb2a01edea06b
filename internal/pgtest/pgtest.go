// Package pgtest runs a PostgreSQL server (Debian's postgresql) for the
// tests of one package: started on first use, on a Unix socket only, as
// the postgres user (the server refuses root), and stopped by its PID when
// the package's tests end (Main). Each test gets a database of its own.
// It imports nothing of booted, so that the inventory's own tests can use
// it.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is Debian 12's PostgreSQL server (package postgresql, which
// depends on postgresql-15); its other commands are beside it, not on
// PATH.
const Server = "/usr/lib/postgresql/15/bin/postgres"

// Package is the Debian package that has it.
const Package = "postgresql"

var server struct {
	sync.Mutex
	dir, bin string
	cmd      *exec.Cmd
	stdin    io.Closer
	n        int
	err      error
}

// Main runs m's tests and stops the server if one started: call it from
// the package's TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	server.Lock()
	defer server.Unlock()
	if server.cmd != nil {
		server.stdin.Close() // the server's shell stops it
		done := make(chan struct{})
		go func() { server.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second): // by PID: the server's (its pid file), then its shell's
			if b, err := os.ReadFile(filepath.Join(server.dir, "data", "postmaster.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0]); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			server.cmd.Process.Kill()
			<-done
		}
	}
	if server.dir != "" {
		os.RemoveAll(server.dir)
	}
	return code
}

// URL returns the URL of a new, empty database on the package's server,
// starting the server the first time. On a machine without PostgreSQL
// the test is skipped, saying so; in CI (CI set) it fails: CI runs every
// test.
func URL(t testing.TB) string {
	t.Helper()
	server.Lock()
	defer server.Unlock()
	if server.cmd == nil && server.err == nil {
		server.err = start()
	}
	if server.err != nil {
		msg := fmt.Sprintf("PostgreSQL: %v", server.err)
		if os.Getenv("CI") == "" && server.bin == "" {
			t.Skip("skipped: this machine lacks " + Package + " (" + msg + "); `go run mage.go test` as root installs it")
		}
		if os.Getenv("CI") == "" && os.Geteuid() != 0 {
			t.Skip("skipped: the test's PostgreSQL server is started in a root of its own, which needs root (" + msg + ")")
		}
		t.Fatal(msg)
	}
	server.n++
	name := fmt.Sprintf("t%d", server.n)
	if out, err := run(filepath.Join(server.bin, "createdb"), "-h", server.dir, "-U", "postgres", name); err != nil {
		t.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return fmt.Sprintf("postgres:///%s?host=%s&user=postgres&sslmode=disable", name, server.dir)
}

// Exec runs one SQL statement on database url as the server's superuser
// (psql), for a test that sets a database up as a user could not.
func Exec(t testing.TB, url, statement string) string {
	t.Helper()
	out, err := run(filepath.Join(server.bin, "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", statement, url)
	if err != nil {
		t.Fatalf("psql -c %q: %v\n%s", statement, err, out)
	}
	return string(bytes.TrimSpace(out))
}

// ownRoot runs $3 (a shell command line) as the postgres user in a root
// of its own: a tmpfs (mode 0755) with this machine's /usr, /etc and
// /dev, and the cluster's directory $1 as /pg. Its own mount namespace
// (unshare) keeps it from the rest. Not only for tidiness: the server
// refuses to run as root, and a machine whose / only root may search
// (this one's was made mode 0600) leaves an unprivileged user unable to
// load a library; capabilities do not help (initdb checks its binaries
// with access(2), which ignores them).
const ownRoot = `dir=$1 bin=$2 cmd=$3
root=$dir/root
mkdir -p "$root"
mount -t tmpfs -o mode=0755,size=16m pgroot "$root"
for d in usr etc dev pg; do mkdir "$root/$d"; done
mount --rbind /usr "$root/usr"
mount --rbind /etc "$root/etc"
mount --rbind /dev "$root/dev"
mount --bind "$dir" "$root/pg"
for l in bin sbin lib lib64; do [ -e "/$l" ] && ln -s "usr/$l" "$root/$l"; done
mkdir -m 1777 "$root/tmp"
exec chroot "$root" setpriv --reuid postgres --regid postgres --init-groups sh -c "cd /pg && $cmd"
`

// start makes a cluster in a new directory and starts its server.
func start() error {
	if _, err := os.Stat(Server); err != nil {
		return err
	}
	server.bin = filepath.Dir(Server)
	dir, err := os.MkdirTemp("", "booted-pg-")
	if err != nil {
		return err
	}
	server.dir = dir
	u, err := user.Lookup("postgres") // made by the package
	if err != nil {
		return fmt.Errorf("the server runs as the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	// Only the socket in dir (no TCP port); durability is not what the
	// tests are about (fsync off).
	// The server runs until its standard input (a pipe from this
	// process) closes: when Main closes it, or when this process dies
	// however it dies (a test's timeout, kill -9), so that no server is
	// left behind. Then the shell asks it for a fast shutdown and waits.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-euc", ownRoot, "pgtest", dir, server.bin,
		server.bin+"/initdb -D /pg/data -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/pg/initdb.log 2>&1 && { "+
			server.bin+"/postgres -D /pg/data -k /pg -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB </dev/null & "+
			"pid=$!; read -r _ || true; kill -INT $pid; wait $pid || true; }")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	server.stdin = stdin
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	server.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := run(filepath.Join(server.bin, "pg_isready"), "-h", dir, "-U", "postgres", "-q")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			i, _ := os.ReadFile(filepath.Join(dir, "initdb.log"))
			return fmt.Errorf("not ready after 30 s (%v %s); its log:\n%s%s", err, out, i, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs one of the server's client commands, bounded in time.
func run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	return cmd.CombinedOutput()
}
