// Package freshcheck checks that a fresh Debian machine passes: it makes
// a minimal Debian root with debootstrap, puts a clone of the checkout
// and this machine's Go in it, and runs there, chrooted, what the
// README's two commands do on a new machine: the test target's install
// steps and its check that every declared file is there (testInstall),
// the check that every file the code names is declared and there
// (TestNeeds_EveryOneDeclared), then the default target (`go run mage.go`: its own install step and the
// local environment's whole flow) in a network namespace of its own, so
// that it never meets this machine's own `local`, then env:destroy.
//
// CI runs on a machine that already has what earlier runs installed, so
// it cannot see a missing install step; this can (syslinux-common, only
// recommended by syslinux, was one).
package freshcheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"booted/internal/pkgs"
)

// Needs are what the check runs on this machine.
var Needs = pkgs.Need{"debootstrap": "debootstrap", "unshare": "util-linux", "chroot": "coreutils", "pivot_root": "util-linux", "umount": "mount", "git": "git", "mount": "mount", trustStore: "ca-certificates"}

// trustStore is the machine's bundle of authorities.
const trustStore = "/etc/ssl/certs/ca-certificates.crt"

// Debian is the release and mirror of the fresh root: the machine's own
// kind (Debian 12), from the Debian packages the machine reaches.
const (
	suite  = "bookworm"
	mirror = "http://deb.debian.org/debian"
)

// baseVersion changes when what the base root holds changes.
const baseVersion = "1"

// Options of a check; zero values take the defaults shown.
type Options struct {
	Repo     string        // the checkout to clone (with its uncommitted changes)
	CacheDir string        // where the debootstrapped base is kept between checks (/var/cache/booted/fresh)
	GoRoot   string        // this machine's Go, mounted read-only in the root (go env GOROOT)
	Timeout  time.Duration // for the whole check (40 minutes)
}

// Run makes the fresh root and runs the check in it, writing what the
// commands print to out. The root goes when it ends.
func Run(ctx context.Context, out io.Writer, o Options) error {
	if os.Geteuid() != 0 {
		return errors.New("testFresh needs root: it debootstraps a Debian root and chroots into it")
	}
	if err := pkgs.Ensure(ctx, out, Needs); err != nil {
		return err
	}
	if err := pkgs.Verify(Needs); err != nil {
		return err
	}
	if o.CacheDir == "" {
		o.CacheDir = "/var/cache/booted/fresh"
	}
	if o.Timeout == 0 {
		o.Timeout = 40 * time.Minute
	}
	if o.GoRoot == "" {
		g, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
		if err != nil {
			return fmt.Errorf("go env GOROOT: %w", err)
		}
		o.GoRoot = strings.TrimSpace(string(g))
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	base, err := baseRoot(ctx, out, o.CacheDir)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("/var/tmp", "booted-fresh-")
	if err != nil {
		return err
	}
	root := filepath.Join(work, "root")
	defer cleanup(out, work, root)
	fmt.Fprintf(out, "fresh: a copy of the Debian %s base in %s\n", suite, root)
	if err := run(ctx, out, "cp", "-a", base, root); err != nil {
		return err
	}
	if err := copyCheckout(ctx, out, o.Repo, filepath.Join(root, "root", "booted")); err != nil {
		return err
	}
	// What a new machine of this kind has that no package brings: its
	// resolver, and its trust store with the workplace's own authorities
	// (the registries are reached through them).
	for _, f := range []string{"/etc/resolv.conf", trustStore} {
		if err := copyFile(f, filepath.Join(root, f)); err != nil {
			return err
		}
	}
	local, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
	for _, f := range local {
		if err := copyFile(f, filepath.Join(root, f)); err != nil {
			return err
		}
	}
	script := filepath.Join(work, "check.sh")
	if err := os.WriteFile(script, []byte(checkScript), 0o700); err != nil {
		return err
	}
	env, err := chrootEnv(ctx)
	if err != nil {
		return err
	}
	// A private mount namespace: the root's mounts (proc, sys, dev, run,
	// Go) are its own and go with it.
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", script, root, o.GoRoot)
	cmd.Env = append(os.Environ(), "FRESH_ENV="+strings.Join(env, " "))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	if err != nil {
		return fmt.Errorf("the fresh machine failed (after %s): %w; what it printed is above", time.Since(start).Round(time.Second), err)
	}
	fmt.Fprintf(out, "fresh: passed in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// checkScript runs in the private mount namespace with the root ($1) and
// this machine's Go ($2). Phase one (this machine's network: it reaches
// the package registries): the test target's install steps and checks.
// Phase two (a network namespace of its own, with no way out: everything
// it needs was installed in phase one or by the default target's own
// install step, which finds it there): the default target, a request to
// hello as the README shows it, and env:destroy.
const checkScript = `set -eu
R=$1
G=$2
mount --bind "$R" "$R"   # the root a mount of its own, as / is on a machine (ip netns exec remounts it)
mount -t proc proc "$R/proc"
mount -t sysfs sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 run "$R/run"
mkdir -p "$R/usr/local/go"
mount --bind "$G" "$R/usr/local/go"
mount -o remount,bind,ro "$R/usr/local/go"
in_root() { chroot "$R" /usr/bin/env -i $FRESH_ENV /bin/sh -c "cd /root/booted && $1"; }
echo "fresh: phase one: go run mage.go testInstall (the test target's installs and the check of every declared file)"
in_root 'go run mage.go testInstall'
echo "fresh: every file and command the code uses is declared and, after those installs, here (TestNeeds_EveryOneDeclared)"
in_root 'CI=true go test -count=1 -run "^TestNeeds_EveryOneDeclared$" ./internal/selftest/'
echo "fresh: phase two, in a network namespace of its own: go run mage.go (the default target), curl, env:destroy"
exec unshare --net /bin/sh -eu -c '
R=$1
mount -t sysfs sys "$R/sys"
mount --rbind /sys/fs/cgroup "$R/sys/fs/cgroup"   # as on a machine: local hosts are bounded by cgroups
# The root becomes / (pivot_root, not chroot): the processes of a machine
# are not chrooted, and the kernel refuses a chrooted one a user namespace,
# which local hosts make. (No quote mark in here: this is a quoted word.)
cd "$R"
mkdir -p .fresh-old
pivot_root . .fresh-old
umount -l /.fresh-old
rmdir /.fresh-old
cd /
in_root() { /usr/bin/env -i $FRESH_ENV GOPROXY=off GOFLAGS=-mod=mod /bin/sh -c "cd /root/booted && $1"; }
ip link set lo up
trap "in_root \"go run mage.go env:destroy local\" || true" EXIT
in_root "go run mage.go"
in_root "curl -fsS -m 10 http://10.77.0.10:8080/ | grep -x \"Hello World!\""
in_root "curl -fsS -m 10 -d Ada http://10.77.0.10:8080/ | grep -x \"Hello Ada World!\""
in_root "go run mage.go env:status local"
' sh "$R"
`

// chrootEnv is the environment of the commands in the root: root's, with
// this machine's Go settings (its module proxy) and CI.
func chrootEnv(ctx context.Context) ([]string, error) {
	env := []string{"HOME=/root", "PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GOTOOLCHAIN=local", "TERM=dumb", "LANG=C.UTF-8"}
	for _, k := range []string{"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOFLAGS"} {
		v, err := exec.CommandContext(ctx, "go", "env", k).Output()
		if err != nil {
			return nil, fmt.Errorf("go env %s: %w", k, err)
		}
		if s := strings.TrimSpace(string(v)); s != "" {
			if strings.ContainsAny(s, " \t'\"$`\\") {
				return nil, fmt.Errorf("go env %s = %q: the fresh check passes it through a shell's words; give it without spaces or quotes", k, s)
			}
			env = append(env, k+"="+s)
		}
	}
	if os.Getenv("CI") != "" {
		env = append(env, "CI=true")
	}
	return env, nil
}

// baseRoot returns the debootstrapped base (minbase and ca-certificates,
// which a new machine has), making it the first time.
func baseRoot(ctx context.Context, out io.Writer, cacheDir string) (string, error) {
	h := sha256.Sum256([]byte(baseVersion + "\n" + suite + "\n" + mirror))
	dir := filepath.Join(cacheDir, "debian-"+suite+"-"+hex.EncodeToString(h[:6]))
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	start := time.Now()
	fmt.Fprintf(out, "fresh: debootstrap %s from %s (minbase and ca-certificates; a few minutes, once)\n", suite, mirror)
	var log bytes.Buffer
	if err := run(ctx, &log, "debootstrap", "--variant=minbase", "--include=ca-certificates", suite, root, mirror); err != nil {
		return "", fmt.Errorf("%w\n%s", err, tail(log.String(), 20))
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "fresh: base made in %s\n", time.Since(start).Round(time.Second))
	return root, nil
}

// copyCheckout clones repo into dst (with its history: the default
// environment deploys hello at a commit) and lays the work tree's
// uncommitted changes and new files over it.
func copyCheckout(ctx context.Context, out io.Writer, repo, dst string) error {
	git := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "git", append([]string{"-c", "safe.directory=*"}, args...)...)
	}
	if b, err := git("clone", "-q", "--no-hardlinks", repo, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("git clone %s: %v: %s", repo, err, b)
	}
	list, err := git("-C", repo, "ls-files", "-z", "-m", "-o", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files in %s: %w", repo, err)
	}
	n := 0
	for _, f := range strings.Split(string(list), "\x00") {
		if f == "" {
			continue
		}
		src := filepath.Join(repo, f)
		st, err := os.Lstat(src)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted, or not a file
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, st.Mode().Perm()); err != nil {
			return err
		}
		n++
	}
	fmt.Fprintf(out, "fresh: the checkout cloned into /root/booted, with %d uncommitted files laid over it\n", n)
	return nil
}

// cleanup stops what is left running in root (by PID) and removes work,
// unless a mount is still there (then it says so and leaves it).
func cleanup(out io.Writer, work, root string) {
	for try := 0; try < 10; try++ {
		pids := inRoot(root)
		if len(pids) == 0 {
			break
		}
		fmt.Fprintf(out, "fresh: stopping %d processes left in the root: %v\n", len(pids), pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if m := mountsUnder(work); len(m) > 0 {
		fmt.Fprintf(out, "fresh: %s is left in place: still mounted there: %s\n", work, strings.Join(m, ", "))
		return
	}
	os.RemoveAll(work)
}

// inRoot returns the processes whose root directory is root.
func inRoot(root string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if r, err := os.Readlink(filepath.Join("/proc", e.Name(), "root")); err == nil && (r == root || strings.HasPrefix(r, root+"/")) {
			out = append(out, pid)
		}
	}
	return out
}

// mountsUnder lists this mount namespace's mounts at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{"(cannot read /proc/self/mountinfo)"}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func run(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
