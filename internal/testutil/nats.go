package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// NATSCluster is nats-server processes (Debian's) clustered on loopback
// with JetStream on, gone when the test ends.
type NATSCluster struct {
	URLs  []string
	procs []*exec.Cmd
}

// StartNATS starts n clustered nats-server processes, each with extra
// (more of the configuration: an authorization block, say). It does not
// wait for JetStream to be ready (clients retry until it is).
func StartNATS(t testing.TB, n int, extra ...string) *NATSCluster {
	t.Helper()
	RequireCommands(t, "nats-server")
	dir := t.TempDir()
	c := &NATSCluster{}
	var clientAddrs, routeAddrs, routes []string
	for i := 0; i < n; i++ {
		clientAddrs = append(clientAddrs, FreePort(t))
		routeAddrs = append(routeAddrs, FreePort(t))
		routes = append(routes, "nats-route://"+routeAddrs[i])
	}
	for i := 0; i < n; i++ {
		host, port, _ := net.SplitHostPort(clientAddrs[i])
		rhost, rport, _ := net.SplitHostPort(routeAddrs[i])
		conf := fmt.Sprintf(`server_name: n%d
listen: %s:%s
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB }
cluster { name: booted-test, listen: %s:%s, routes: [%s] }
%s
`, i, host, port, filepath.Join(dir, fmt.Sprint(i)), rhost, rport, strings.Join(routes, ", "), strings.Join(extra, "\n"))
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("nats-server", "-c", path)
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, cmd)
		c.URLs = append(c.URLs, "nats://"+clientAddrs[i])
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p.ProcessState == nil {
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	return c
}

// URL is every server's URL, comma-separated (as nats.Connect takes them).
func (c *NATSCluster) URL() string { return strings.Join(c.URLs, ",") }

// Kill kills server i (SIGKILL: as a machine that dies), by its PID.
func (c *NATSCluster) Kill(i int) {
	c.procs[i].Process.Signal(syscall.SIGKILL)
	c.procs[i].Wait()
}
