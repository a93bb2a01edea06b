package targets

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	staleNetns  = regexp.MustCompile(`^booted-t[0-9a-f]{6}-[a-z0-9-]+$`)
	staleBridge = regexp.MustCompile(`^bt-t[0-9a-f]{6}$`)
	staleNginx  = regexp.MustCompile(`/inventory/t[0-9a-f]{6}/nginx/nginx\.conf`)
)

// sweep removes what test runs that were killed before their cleanup left
// behind: their hosts' processes (by PID, found by namespace), namespaces,
// bridges and controller nginx. It touches only names tests make.
func sweep() (removed int) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		ns := strings.Fields(line)
		if len(ns) == 0 || !staleNetns.MatchString(ns[0]) {
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
		if staleBridge.MatchString(l.Name()) && exec.Command("ip", "link", "del", l.Name()).Run() == nil {
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
		if bytes.HasPrefix(cmd, []byte("nginx: master")) && staleNginx.Match(cmd) {
			syscall.Kill(pid, syscall.SIGQUIT)
			removed++
		}
	}
	return removed
}
