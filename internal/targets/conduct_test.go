package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"booted/internal/report"
	"booted/internal/testutil"
)

// A conductor process for TestConducted_HostsRun: the test binary run
// again with BOOTED_TEST_CONDUCTOR=ROOT|ENV|SITE.
func TestMain(m *testing.M) {
	if spec := os.Getenv("BOOTED_TEST_CONDUCTOR"); spec != "" {
		f := strings.Split(spec, "|")
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		r := newRunner(f[0], f[0]+"/inventory", os.Stdout, os.Stderr)
		if err := r.ConductorRun(ctx, f[1], f[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hosts:run on a site's hosts goes through the site's conductors (two
// processes here) and comes back as if it ran here: per-host output,
// statuses and the recap; the hosts of no site run in-process. A conductor
// killed (-9) while it holds hosts: those fail, naming the host and the
// conductor, the command never runs twice anywhere, and BOOTED_RETRY=failed
// runs it on just those, through the surviving conductor.
func TestConducted_HostsRun(t *testing.T) {
	// The cluster as a user makes it: nats:config writes its trust (a CA,
	// TLS certificates, the controller's and site a's nkeys) and each
	// server's configuration, started as it says.
	var urls, routes []string
	for i := 0; i < 3; i++ {
		urls = append(urls, "tls://"+testutil.FreePort(t))
		routes = append(routes, "nats-route://"+testutil.FreePort(t))
	}
	f := newFixture(t, testutil.Workers(3, 3)+testutil.EnvFile(fmt.Sprintf(`nats:
  urls: [%s]
  routes: [%s]
sites:
  a:
    roles: [workers]
`, strings.Join(urls, ", "), strings.Join(routes, ", "))))
	ctx := context.Background()
	env := f.proj.Env
	f.out.Reset()
	f.must(t, f.r.NATSConfig(ctx, env))
	var confs []string
	for _, l := range strings.Split(f.out.String(), "\n") {
		if c, ok := strings.CutPrefix(l, "start: nats-server -c "); ok {
			confs = append(confs, c)
		}
	}
	if len(confs) != 3 {
		t.Fatalf("nats:config: %d servers to start, want 3:\n%s", len(confs), f.out.String())
	}
	nats := testutil.StartNATSFrom(t, confs, urls)
	natsDir := filepath.Dir(confs[0])
	f.must(t, f.r.EnvStartAll(ctx, env))
	conductor := func(name string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BOOTED_TEST_CONDUCTOR="+f.proj.Root+"|"+env+"|a")
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
		})
		return cmd
	}
	// Without a key of nats:config's, NATS refuses the connection (over
	// TLS, checked against its CA): no jobs published, none taken.
	if nc, err := natsgo.Connect(nats.URL(), natsgo.Timeout(5*time.Second), natsgo.RootCAs(filepath.Join(natsDir, "ca.pem"))); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("a client without the nkey: %v, want an authorization violation", err)
	}
	c1 := conductor("c1")
	c2 := conductor("c2")
	f.waitFor(t, "two conductors beating", 30*time.Second, func() bool {
		f.out.Reset()
		f.r.JSON = true
		defer func() { f.r.JSON = false }()
		return f.r.ConductorsList(ctx, env) == nil && strings.Count(f.out.String(), `"site":"a"`) == 2
	})

	// Through the conductors: each worker's output and status, the
	// load balancer (no site) in-process.
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env, "hostname; echo $$ >> /root/ran"))
	f.r.JSON = false
	lines := map[string]report.HostLine{}
	for _, l := range strings.Split(strings.TrimSpace(f.out.String()), "\n") {
		var hl report.HostLine
		if json.Unmarshal([]byte(l), &hl) == nil && hl.Host != "" {
			lines[hl.Host] = hl
		}
	}
	for _, h := range []string{"w1", "w2", "w3", "lb1"} {
		hl := lines[h]
		if hl.Status != "ok" || strings.TrimSpace(hl.Stdout) != h {
			t.Errorf("hosts:run on %s: %+v", h, hl)
		}
		if conducted := strings.HasPrefix(hl.Note, "by conductor "); conducted != (h != "lb1") {
			t.Errorf("%s: note %q: the workers (site a) go through a conductor, lb1 (no site) does not", h, hl.Note)
		}
	}
	if sum := lastSummary(t, f.out.String()); sum.OK != 4 {
		t.Errorf("recap: %+v", sum)
	}

	// A conductor killed while it holds the hosts (c1 alone takes them;
	// a command that takes 3 s); c3 starts then and gets them again.
	c2.Process.Signal(syscall.SIGTERM)
	c2.Wait()
	f.out.Reset()
	done := make(chan error, 1)
	go func() { done <- f.r.HostsRun(ctx, env+"/workers", "sleep 3; echo $$ >> /root/ran2") }()
	time.Sleep(1500 * time.Millisecond)
	c1.Process.Signal(syscall.SIGKILL)
	c1.Wait()
	conductor("c3")
	err := <-done
	out := f.out.String()
	t.Logf("hosts:run with conductor c1 killed:\n%s", out)
	runs := func(h, file string) int { // the host's /root is this directory
		b, _ := os.ReadFile(f.proj.Inventory + "/" + env + "/hosts/" + h + "/fs/root/" + file)
		return strings.Count(string(b), "\n")
	}
	var held []string
	for _, h := range []string{"w1", "w2", "w3"} {
		if n := runs(h, "ran2"); n > 1 {
			t.Errorf("%s ran the command %d times", h, n)
		}
		if strings.Contains(out, "host "+h+": conductor ") {
			held = append(held, h)
		}
	}
	if err == nil || len(held) != 3 {
		t.Errorf("hosts:run with the conductor holding every worker killed: err %v, hosts failed naming their conductor %v, want w1 w2 w3", err, held)
	}
	// BOOTED_RETRY=failed: just those, through c3.
	f.r.RetryFailed, f.r.JSON = true, true
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/workers", "echo again"))
	f.r.RetryFailed, f.r.JSON = false, false
	if sum := lastSummary(t, f.out.String()); sum.OK != len(held) {
		t.Errorf("BOOTED_RETRY=failed after the kill: %+v, want the %d held hosts", sum, len(held))
	}
}
