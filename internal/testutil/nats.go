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
	"time"
)

// NATSCluster is nats-server processes (Debian's) clustered on loopback
// with JetStream on, gone when the test ends.
type NATSCluster struct {
	URLs  []string
	procs []*exec.Cmd
	confs []string
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
		cluster := fmt.Sprintf("cluster { name: booted-test, listen: %s:%s, routes: [%s] }", rhost, rport, strings.Join(routes, ", "))
		if n == 1 { // a cluster of one never elects a JetStream leader
			cluster = ""
		}
		conf := fmt.Sprintf(`server_name: n%d
listen: %s:%s
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB }
%s
%s
`, i, host, port, filepath.Join(dir, fmt.Sprint(i)), cluster, strings.Join(extra, "\n"))
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.start(t, path)
		c.URLs = append(c.URLs, "nats://"+clientAddrs[i])
	}
	return c
}

// StartNATSFrom starts a nats-server for each configuration file (as
// nats:config writes them), whose clients reach them at urls.
func StartNATSFrom(t testing.TB, confs, urls []string) *NATSCluster {
	t.Helper()
	RequireCommands(t, "nats-server")
	c := &NATSCluster{URLs: urls}
	for _, conf := range confs {
		c.start(t, conf)
	}
	for i, u := range urls { // each listening
		addr := u[strings.Index(u, "://")+3:]
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(strings.TrimSuffix(confs[i], ".conf") + ".log")
				t.Fatalf("nats-server -c %s: not listening on %s after 15 s:\n%s", confs[i], addr, log)
			}
		}
	}
	return c
}

// start runs nats-server -c conf, its log beside conf; it is killed (by
// its PID) when the test ends.
func (c *NATSCluster) start(t testing.TB, conf string) {
	t.Helper()
	cmd := exec.Command("nats-server", "-c", conf)
	log, err := os.Create(strings.TrimSuffix(conf, ".conf") + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.Close()
	c.procs = append(c.procs, cmd)
	c.confs = append(c.confs, conf)
	p := cmd
	t.Cleanup(func() {
		if p.ProcessState == nil {
			p.Process.Kill()
			p.Wait()
		}
	})
}

// URL is every server's URL, comma-separated (as nats.Connect takes them).
func (c *NATSCluster) URL() string { return strings.Join(c.URLs, ",") }

// Kill kills server i (SIGKILL: as a machine that dies), by its PID.
func (c *NATSCluster) Kill(i int) {
	c.procs[i].Process.Signal(syscall.SIGKILL)
	c.procs[i].Wait()
}

// Restart starts server i again (after Kill), from its configuration and
// its store: it rejoins the cluster and catches up.
func (c *NATSCluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.start(t, c.confs[i])
	c.procs[i], c.procs = c.procs[len(c.procs)-1], c.procs[:len(c.procs)-1]
	c.confs = c.confs[:len(c.confs)-1]
}
