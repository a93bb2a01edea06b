package targets

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/hostquery"
	"booted/internal/inventory"
	"booted/internal/report"
	"booted/internal/testutil"
)

// lastSummary parses the JSON recap a multi-host target printed last.
func lastSummary(t *testing.T, out string) report.Summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var s report.Summary
		if json.Unmarshal([]byte(lines[i]), &s) == nil && s.Operation != "" {
			return s
		}
	}
	t.Fatalf("no JSON recap in:\n%s", out)
	return report.Summary{}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The services issue's checks, in the order a user would meet them.
func TestTargets_Services(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1", "v2")
	f.r.Batch = "all" // all at once: one recap to read (rolling batches: lb_test.go)
	ctx := context.Background()
	env := f.proj.Env

	// env:startAll brings it all up, deploys v1 and tests it.
	f.must(t, f.r.EnvStartAll(ctx, env))
	hosts := f.hosts(t)
	for _, w := range []string{"w1", "w2"} {
		if hosts[w].State != "serving" {
			t.Errorf("%s is %s, want serving", w, hosts[w].State)
		}
		if got := httpGet(t, "http://"+hosts[w].IP+":8080/"); got != "Hello World!\n" {
			t.Errorf("curl %s: %q", w, got)
		}
	}
	if hosts["lb1"].State != "serving" {
		t.Errorf("lb1 is %s", hosts["lb1"].State)
	}
	// hosts:locate: w1's veth is on the environment's bridge, as ip says;
	// connected: finds the hosts on that bridge.
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.HostsLocate(ctx, env, "w1"))
	var loc []hostquery.LocateRow
	if err := unmarshalRows(f.out.Bytes(), &loc); err != nil || len(loc) != 1 || loc[0].Bridge == "" || loc[0].Port == "" || loc[0].IP != hosts["w1"].IP {
		t.Fatalf("hosts:locate w1: %v %s", err, f.out)
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "dev", loc[0].Port).CombinedOutput(); err != nil || !strings.Contains(string(out), "master "+loc[0].Bridge) {
		t.Errorf("hosts:locate says w1 is on %s through %s; ip says: %v %s", loc[0].Bridge, loc[0].Port, err, out)
	}
	f.out.Reset()
	f.must(t, f.r.HostsQuery(ctx, env, "connected:"+loc[0].Bridge+" and role:workers"))
	if n := strings.Count(f.out.String(), `"role":"workers"`); n != 2 {
		t.Errorf("hosts:query connected:%s found %d workers:\n%s", loc[0].Bridge, n, f.out)
	}
	f.r.JSON = false
	// service:rollback with one release on each worker: nothing to roll
	// back, said per host, not a failure (the landed one failed every
	// host "no previous release to roll back to").
	f.out.Reset()
	f.must(t, f.r.ServiceRollback(ctx, env+"/workers", "hello"))
	if out := f.out.String(); !strings.Contains(out, "recap service:rollback hello: 2 ok, 0 failed") || strings.Count(out, "nothing to roll back: it has had one release only") < 2 {
		t.Errorf("service:rollback on first releases:\n%s", out)
	}
	if got := httpGet(t, "http://"+hosts["w1"].IP+":8080/"); got != "Hello World!\n" {
		t.Errorf("w1 after a rollback with nothing to roll back: %q", got)
	}
	// Re-running is a no-op: nothing is uploaded, restarted or drained;
	// the load balancer's nginx is not reloaded (its configuration keeps
	// its mtime, its workers their PIDs).
	snapshot := func() string { return f.hostsOutput(t, env, "cat /opt/booted/hello/run/pid 2>/dev/null; "+lbState) }
	before := snapshot()
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.EnvStartAll(ctx, env))
	if strings.Contains(f.out.String(), "uploaded") {
		t.Errorf("second env:startAll uploaded again:\n%s", f.out)
	}
	f.r.JSON = false
	if after := snapshot(); after != before {
		t.Errorf("the second env:startAll changed service PIDs or reloaded the load balancer:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	f.r.JSON = true

	// Deploy v2: every worker reports it; deploying it again uploads nothing.
	f.out.Reset()
	f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v2"))
	sum := lastSummary(t, f.out.String())
	if sum.OK != 2 || !strings.Contains(sum.Results[0].Note, "uploaded") {
		t.Errorf("deploy v2: %+v", sum)
	}
	f.junit(t, ctx, 2)
	for _, w := range []string{"w1", "w2"} {
		if got := httpGet(t, "http://"+hosts[w].IP+":8080/version"); got != "v2\n" {
			t.Errorf("%s /version = %q after deploying v2", w, got)
		}
	}
	f.out.Reset()
	f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v2"))
	for _, r := range lastSummary(t, f.out.String()).Results {
		if !strings.Contains(r.Note, "unchanged") {
			t.Errorf("redeploying v2 on %s: %s", r.Host, r.Note)
		}
	}

	// An unknown version fails before anything is touched.
	if err := f.r.ServiceDeploy(ctx, env, "hello", "v9"); err == nil || !strings.Contains(err.Error(), `unknown version "v9"`) {
		t.Errorf("unknown version: %v", err)
	}

	// One worker stopped: the others are deployed, the stopped one is
	// unreachable and the target fails; once it is back, BOOTED_RETRY=failed
	// deploys only to it.
	f.r.JSON = false
	f.must(t, f.r.ImageStop(ctx, env, "w2"))
	f.r.JSON = true
	f.out.Reset()
	err := f.r.ServiceDeploy(ctx, env, "hello", "v1")
	if err == nil || !strings.Contains(err.Error(), "w2") {
		t.Fatalf("deploy with w2 stopped: err = %v", err)
	}
	sum = lastSummary(t, f.out.String())
	if sum.OK != 1 || len(sum.Unreachable) != 1 || sum.Unreachable[0] != "w2" {
		t.Errorf("deploy with w2 stopped: %+v", sum)
	}
	f.r.JSON = false
	// The documented next step, straight after image:start (no
	// hosts:logged or hosts:filter in between, as a user would): the
	// deploy waits for w2 to come up, then retries it alone.
	f.must(t, f.r.ImageStart(ctx, env, "w2"))
	f.r.JSON, f.r.RetryFailed = true, true
	f.out.Reset()
	f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v1"))
	sum = lastSummary(t, f.out.String())
	if len(sum.Results) != 1 || sum.Results[0].Host != "w2" || sum.OK != 1 {
		t.Errorf("retry of failed hosts: %+v", sum)
	}
	f.r.RetryFailed = false
	if got := httpGet(t, "http://"+hosts["w2"].IP+":8080/version"); got != "v1\n" {
		t.Errorf("w2 /version = %q after the retry", got)
	}

	// service:stop, then service:test fails and says so in JUnit.
	f.must(t, f.r.ServiceStop(ctx, env+"/workers", "hello"))
	if err := f.r.ServiceTest(ctx, env, "hello"); err == nil {
		t.Error("service:test passed with the service stopped")
	}
	f.must(t, f.r.ServiceStart(ctx, env, "hello"))
	f.must(t, f.r.ServiceTest(ctx, env, "hello"))

	// The supervisor restarts a service that dies.
	f.r.JSON = false
	f.out.Reset()
	f.must(t, f.r.HostsRun(ctx, env+"/workers", "cat /opt/booted/hello/run/pid; kill -9 $(cat /opt/booted/hello/run/pid)"))
	before = f.out.String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.out.Reset()
		err := f.r.HostsRun(ctx, env+"/workers", "cat /opt/booted/hello/run/pid; curl -fsS http://localhost:8080/healthz")
		if err == nil && f.out.String() != before && strings.Count(f.out.String(), "| ok") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not restarted after kill -9:\nbefore %s\nnow %s", before, f.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.r.JSON = true
	f.out.Reset()
	f.must(t, f.r.EnvStatus(ctx, env))
	var st []statusRow
	if err := unmarshalRows(f.out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	for _, r := range st {
		if r.Role == "workers" && (r.Version != "v1" || r.Health != "ok") {
			t.Errorf("env:status %+v", r)
		}
	}
}

// junit runs service:test with BOOTED_JUNIT and checks the file parses with
// one passing suite per worker.
func (f *fixture) junit(t *testing.T, ctx context.Context, workers int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "junit.xml")
	f.r.JUnit = path
	defer func() { f.r.JUnit = "" }()
	f.must(t, f.r.ServiceTest(ctx, f.proj.Env, "hello"))
	testutil.CheckJUnit(t, path) // what a real service:test wrote, against the schemas CI servers read
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, b)
	}
	if len(doc.Suites) != workers {
		t.Fatalf("%d suites, want %d", len(doc.Suites), workers)
	}
	for _, s := range doc.Suites {
		if s.Tests != 4 || s.Failures != 0 || len(s.Cases) != 4 || !strings.HasPrefix(s.Name, "hello@w") {
			t.Errorf("suite %+v", s)
		}
	}
}

// A host whose key changed is refused, loudly and by name; Ctrl-C during a
// long hosts:run ends the remote commands within a few seconds.
func TestTargets_KeyChangeAndCancel(t *testing.T) {
	f := newFixture(t, testutil.DefaultEnv)
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.ImageStart(ctx, env, "w1,w2"))
	f.must(t, f.r.HostsReset(ctx, env))

	// Cancel a long command.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- f.r.HostsRun(cctx, env, "sleep 60 & echo $! > /tmp/cancel.pid; echo started; wait") }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.out.String(), "started") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	start := time.Now()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a cancelled hosts:run succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hosts:run did not return after cancel")
	}
	t.Logf("hosts:run returned %v after cancel", time.Since(start).Round(time.Millisecond))
	// The remote kill is the wrapper's, on the hosts: give it a few seconds.
	// A killed sleep may linger as a zombie until init reaps it: gone too.
	for {
		f.out.Reset()
		f.must(t, f.r.HostsRun(ctx, env, `case "$(ps -o stat= -p "$(cat /tmp/cancel.pid)")" in ""|Z*) echo gone;; *) echo alive;; esac`))
		if strings.Count(f.out.String(), "| gone") == 2 { // w1 and w2
			t.Logf("remote commands gone %v after cancel", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("remote sleep survived the cancel by 5s:\n%s", f.out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Change w1's pinned key: every connection to it is refused.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	f.r.withEnv(ctx, env, func(s *session) error {
		return s.Store.Update(ctx, func(tx *inventory.Tx) error {
			return tx.Modify(env, "w1", func(h *inventory.Host) error {
				h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
				return nil
			})
		})
	})
	f.out.Reset()
	err := f.r.HostsRun(ctx, env, "true")
	if err == nil || !strings.Contains(err.Error(), "w1") || strings.Contains(err.Error(), "w2") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(f.out.String(), "host w1 (") || !strings.Contains(f.out.String(), "HOST KEY CHANGED") {
		t.Errorf("the refusal does not name the host and the change:\n%s", f.out)
	}
	// hosts:reset keeps the pinned key: the advice is a new provisioning.
	if strings.Contains(f.out.String(), "hosts:reset") || !strings.Contains(f.out.String(), "image:stop then image:start") {
		t.Errorf("the refusal's advice is wrong:\n%s", f.out)
	}
}

// env:startMin, env:startWorker and env:stop compose the same steps.
func TestTargets_EnvMinWorkerStop(t *testing.T) {
	f := newFixture(t, testutil.ServiceEnv)
	f.proj.GitInit(t, "v1")
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartMin(ctx, env)) // workers min 1, load balancer min 1
	hosts := f.hosts(t)
	if len(hosts) != 2 || hosts["w1"].State != "serving" || hosts["lb1"].State != "serving" {
		t.Fatalf("after env:startMin: %+v", hosts)
	}
	f.must(t, f.r.EnvStartWorker(ctx, env, "w3"))
	if h := f.hosts(t)["w3"]; h.State != "serving" || httpGet(t, "http://"+h.IP+":8080/version") != "v1\n" {
		t.Errorf("after env:startWorker w3: %+v", h)
	}
	if err := f.r.EnvStartWorker(ctx, env, "w9"); err == nil {
		t.Error("env:startWorker started a host no role has")
	}
	f.must(t, f.r.EnvStop(ctx, env))
	for n, h := range f.hosts(t) {
		if h.State != "stopped" {
			t.Errorf("after env:stop %s is %s", n, h.State)
		}
	}
}
