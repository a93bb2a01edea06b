package bridge

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The kernel's neighbour tables (ARP for IPv4, NDP for IPv6) are one per
// protocol for the whole machine, every network namespace's entries in
// it, and their garbage collector refuses new entries once there are more
// than gc_thresh2 for 5 seconds and more than gc_thresh3 at once ("neighbor
// table overflow": hosts answer "no route to host"). The defaults (128,
// 512, 1024) hold about 500 local hosts on one bridge: each has an entry
// on this machine's side and one for the gateway in its own namespace. So
// a bridge's subnet raises them by what its hosts need, and the last
// bridge to go puts back the values found before the first.
var neighTables = []string{"/proc/sys/net/ipv4/neigh/default/", "/proc/sys/net/ipv6/neigh/default/"}

// neighDir records, under /run (gone at a reboot, as the settings are),
// each bridge's need and the values found before booted raised them.
var neighDir = "/run/booted-neigh"

var linkExists = LinkExists

// perHost is the entries one address of a bridge's subnet may need: this
// machine's for it, its own for the gateway, and one for a peer (a load
// balancer's for a worker).
const perHost = 3

// NeighNeed is what a bridge of subnet adds to the neighbour tables'
// thresholds.
func NeighNeed(subnet netip.Prefix) int {
	return perHost << (32 - subnet.Bits())
}

// sizeNeigh records that bridge (of subnet) needs room in the neighbour
// tables, or (subnet invalid) that it is gone, and sets the thresholds to
// the values found first plus what the bridges that are there need. It
// runs under globalLock. A table that cannot be raised is an error naming
// the setting to raise, when it is too small for the bridges.
func sizeNeigh(bridge string, subnet netip.Prefix) error {
	if err := os.MkdirAll(neighDir, 0o755); err != nil {
		return err
	}
	rec := filepath.Join(neighDir, bridge)
	if subnet.IsValid() {
		if err := os.WriteFile(rec, []byte(strconv.Itoa(NeighNeed(subnet))), 0o644); err != nil {
			return err
		}
	} else if err := os.Remove(rec); errors.Is(err, fs.ErrNotExist) {
		return nil // not a bridge booted sized
	} else if err != nil {
		return err
	}
	need := 0
	entries, err := os.ReadDir(neighDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "orig" {
			continue
		}
		if !linkExists(e.Name()) && e.Name() != bridge { // gone without us: forget it
			os.Remove(filepath.Join(neighDir, e.Name()))
			continue
		}
		b, _ := os.ReadFile(filepath.Join(neighDir, e.Name()))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		need += n
	}
	orig := filepath.Join(neighDir, "orig")
	found, err := readOrig(orig)
	if err != nil {
		return err
	}
	if need == 0 {
		if found != nil {
			writeThresholds(found)
			os.Remove(orig)
		}
		return nil
	}
	if found == nil {
		found = map[string]int{}
		for _, t := range neighTables {
			if _, err := os.Stat(t); err != nil {
				continue // (IPv6 turned off)
			}
			for _, k := range []string{"gc_thresh2", "gc_thresh3"} {
				b, err := os.ReadFile(t + k)
				if err != nil {
					return err
				}
				found[t+k], _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
		}
		var b strings.Builder
		for k, v := range found {
			fmt.Fprintf(&b, "%s %d\n", k, v)
		}
		if err := os.WriteFile(orig, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	want := map[string]int{}
	for k, v := range found {
		want[k] = v + need
	}
	return writeThresholds(want)
}

func readOrig(path string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k], _ = strconv.Atoi(v)
		}
	}
	return m, nil
}

// writeThresholds sets each setting (a path under /proc/sys); one that
// cannot be set and is below its value is an error saying what to raise.
func writeThresholds(m map[string]int) error {
	var errs []error
	for k, v := range m {
		if err := os.WriteFile(k, []byte(strconv.Itoa(v)), 0o644); err != nil {
			b, _ := os.ReadFile(k)
			if cur, _ := strconv.Atoi(strings.TrimSpace(string(b))); cur < v {
				name := strings.ReplaceAll(strings.TrimPrefix(k, "/proc/sys/"), "/", ".")
				errs = append(errs, fmt.Errorf("the bridges' hosts need %s of at least %d (it is %d) and it could not be raised (%v): raise it (sysctl -w %s=%d) or use a smaller subnet", name, v, cur, err, name, v))
			}
		}
	}
	return errors.Join(errs...)
}
