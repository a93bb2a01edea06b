// Package facts gathers what a host is (as Ansible's setup does, small):
// CPUs, memory, disks, kernel, distribution, architecture, with one shell
// command over the connection booted already has, and reads its output
// into attributes.
package facts

import (
	"bufio"
	"strings"
)

// Keys are the attributes facts fill (booted's: an operator cannot set them).
var Keys = []string{"cpus", "memory_mb", "disks", "kernel", "arch", "distribution", "distribution_version"}

// Script prints one "KEY VALUE" line per fact (disks: one line per disk,
// NAME:SIZE_GB). It needs only POSIX sh, awk and util-linux's lsblk (a
// missing one leaves its fact out).
const Script = `echo "cpus $(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
awk '/^MemTotal:/ {printf "memory_mb %d\n", $2 / 1024}' /proc/meminfo
echo "kernel $(uname -r)"
echo "arch $(uname -m)"
if [ -r /etc/os-release ]; then
	. /etc/os-release
	echo "distribution ${ID:-unknown}"
	[ -n "${VERSION_ID:-}" ] && echo "distribution_version $VERSION_ID"
fi
command -v lsblk >/dev/null && lsblk -b -d -n -o NAME,SIZE,TYPE 2>/dev/null | awk '$3 == "disk" {printf "disks %s:%d\n", $1, $2 / 1073741824}'
true`

// Parse reads Script's output: each known key with its values in order.
// Unknown keys and empty values are left out.
func Parse(out string) map[string][]string {
	known := map[string]bool{}
	for _, k := range Keys {
		known[k] = true
	}
	got := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if v = strings.TrimSpace(v); known[k] && v != "" {
			got[k] = append(got[k], v)
		}
	}
	return got
}
