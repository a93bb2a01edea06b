// Package testres names what booted's tests create on the machine
// (namespaces, bridges, a controller nginx, all under an environment named
// t + 6 hex digits), lets a test run claim its environment for as long as it
// lives, and sweeps what runs that were killed before their cleanup left
// behind, never what a live run (another checkout's, say) still uses.
package testres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"booted/internal/nftables"
)

// ownerDir holds one lock file per live test environment.
const ownerDir = "/run/booted-tests"

// Claim marks env as in use by this process until release is called or the
// process ends (the kernel drops the flock then, so a killed run's
// environment becomes sweepable at once).
func Claim(env string) (release func(), err error) {
	if err := os.MkdirAll(ownerDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(ownerDir, env+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("test environment %s is claimed by another run: %w", env, err)
	}
	return func() { os.Remove(path); f.Close() }, nil
}

// claimed reports whether a live process holds env's claim.
func claimed(env string) bool {
	f, err := os.Open(filepath.Join(ownerDir, env+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

var (
	staleNetns  = regexp.MustCompile(`^booted-(t[0-9a-f]{6})[-.][a-z0-9-]+$`)                             // a host's (booted-ENV-HOST), a site's (booted-ENV.SITE)
	staleBridge = regexp.MustCompile(`^bt-(t[0-9a-f]{6})(?:-[a-z0-9]+)?$`)                                // an environment's, or a site's (bt-ENV-SITE)
	staleNginx  = regexp.MustCompile(`/inventory/(t[0-9a-f]{6})/(?:sites/[a-z0-9-]+/)?nginx/nginx\.conf`) // the controller's, a site's
	staleQemu   = regexp.MustCompile(`^-name\x00booted-(?:lab-)?(t[0-9a-f]{6})-`)
	// The bare-metal lab's BMCs and a network's dnsmasq, by their files.
	staleMetal = regexp.MustCompile(`/inventory/(t[0-9a-f]{6})/(?:lab|metal/net)/`)
	// The metadata service's DNAT of an environment; the conductors
	// test's rule that keeps the controller from the hosts.
	staleMetadata = regexp.MustCompile(`^table (ip|inet|bridge) (booted_(?:md|in|iso|sites|ps)_(t[0-9a-f]{6}))$`)
)

// Sweep removes what test runs that were killed before their cleanup left
// behind: their hosts' processes (by PID, found by namespace), namespaces,
// bridges, controller nginx, VMs and the bare-metal lab's machines, BMCs
// and dnsmasq (a lab tap is left: its name does not say whose it is). It touches only names tests make, and only
// those of environments no live run has claimed.
func Sweep() (removed int) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		ns := strings.Fields(line)
		if len(ns) == 0 {
			continue
		}
		if m := staleNetns.FindStringSubmatch(ns[0]); m == nil || claimed(m[1]) {
			continue
		}
		pids, _ := exec.Command("ip", "netns", "pids", ns[0]).Output()
		for _, p := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
		if exec.Command("ip", "netns", "del", ns[0]).Run() == nil {
			removed++
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		m := staleBridge.FindStringSubmatch(l.Name())
		if m != nil && !claimed(m[1]) && exec.Command("ip", "link", "del", l.Name()).Run() == nil {
			removed++
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		switch {
		case bytes.HasPrefix(cmd, []byte("nginx: master")):
			if m := staleNginx.FindSubmatch(cmd); m != nil && !claimed(string(m[1])) {
				syscall.Kill(pid, syscall.SIGQUIT)
				removed++
			}
		case bytes.HasPrefix(cmd, []byte("ipmi_sim\x00")), bytes.HasPrefix(cmd, []byte("dnsmasq\x00")):
			if m := staleMetal.FindSubmatch(cmd); m != nil && !claimed(string(m[1])) {
				syscall.Kill(pid, syscall.SIGKILL)
				removed++
			}
		case bytes.HasPrefix(cmd, []byte("qemu-system-x86_64\x00")):
			args := cmd[len("qemu-system-x86_64\x00"):]
			if m := staleQemu.FindSubmatch(args); m != nil && !claimed(string(m[1])) {
				syscall.Kill(pid, syscall.SIGKILL)
				removed++
			}
		}
	}
	// The metadata service's DNAT of an environment (an nftables table).
	tables, _ := exec.Command("nft", "list", "tables").Output()
	for _, l := range strings.Split(string(tables), "\n") {
		if m := staleMetadata.FindStringSubmatch(l); m != nil && !claimed(m[3]) {
			if nftables.Delete(context.Background(), m[1], m[2]) == nil {
				removed++
			}
		}
	}
	// A killed VM's tap device outlives it, and its bridge is gone by now.
	time.Sleep(100 * time.Millisecond)
	for _, l := range links {
		_, err := os.Stat(filepath.Join("/sys/class/net", l.Name(), "master"))
		if strings.HasPrefix(l.Name(), "bq") && os.IsNotExist(err) && exec.Command("ip", "link", "del", l.Name()).Run() == nil {
			removed++
		}
	}
	locks, _ := filepath.Glob(filepath.Join(ownerDir, "t*.lock"))
	for _, l := range locks {
		if env := strings.TrimSuffix(filepath.Base(l), ".lock"); !claimed(env) {
			os.Remove(l)
		}
	}
	return removed
}

// Exclusive takes the machine-wide lock named name (blocking until any
// other test run or package holding it lets go) and returns its release.
// Tests that load the CPU for long (qemu VMs under TCG) and tests that
// measure latency take "cpu", so that the first never skew the second.
// Each holder (who) is written to the lock's log with when it waited, got
// and let go, so a test run can show where its wall time went
// (HolderLog).
func Exclusive(name, who string) (release func(), err error) {
	if err := os.MkdirAll(ownerDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(ownerDir, "exclusive-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	asked := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	got := time.Now()
	return func() {
		logHolder(name, fmt.Sprintf("%s  held %5.0fs  waited %5.0fs  %s\n", got.Format("15:04:05"), time.Since(got).Seconds(), got.Sub(asked).Seconds(), who))
		f.Close()
	}, nil
}

func holderLog(name string) string { return filepath.Join(ownerDir, "exclusive-"+name+".log") }

func logHolder(name, line string) {
	f, err := os.OpenFile(holderLog(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	f.WriteString(line)
	f.Close()
}

// HolderLog returns the lines the holders of the lock named name wrote
// since ResetHolderLog, in the order they let go.
func HolderLog(name string) string {
	b, _ := os.ReadFile(holderLog(name))
	return string(b)
}

// ResetHolderLog empties the lock's log.
func ResetHolderLog(name string) { os.Remove(holderLog(name)) }
