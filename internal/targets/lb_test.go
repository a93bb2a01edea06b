package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/loadgen"
	"booted/internal/remote"
	"booted/internal/testutil"
)

// lbEnv: one load balancer and three workers running hello.
var lbEnv = testutil.Workers(3, 4) + testutil.Hello

// commitBad commits a version of hello whose health check fails, tagged bad.
func commitBad(t *testing.T, root string) {
	t.Helper()
	main := filepath.Join(root, "services", "hello", "main.go")
	b, _ := os.ReadFile(main)
	b = []byte(strings.Replace(string(b), `fmt.Fprintln(w, "ok") })`, `http.Error(w, "sick", 500) })`, 1))
	os.WriteFile(main, b, 0o644)
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", "bad"}, {"tag", "bad"}} {
		cmd := exec.Command("git", append([]string{"-C", root, "-c", "user.name=t", "-c", "user.email=t@booted.invalid"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
}

// load runs the load generator in the background until stop is called.
func load(t *testing.T, url string, d time.Duration) (stop func() *loadgen.Stats) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *loadgen.Stats, 1)
	go func() {
		st, err := loadgen.Run(ctx, loadgen.Options{URL: url, Duration: d, Rate: 50})
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	var once sync.Once
	var st *loadgen.Stats
	return func() *loadgen.Stats { // may be called more than once
		once.Do(func() { cancel(); st = <-done })
		return st
	}
}

func (f *fixture) lbURL(t *testing.T) string {
	var url string
	f.must(t, f.r.withEnv(context.Background(), f.proj.Env, func(s *session) (err error) { url, err = s.Deploys().LBURL(context.Background()); return err }))
	return url
}

// The load balancer keeps every client request working while a worker is
// killed, while a version rolls out, and while a bad version is refused.
func TestTargets_LoadBalancerUnderLoad(t *testing.T) {
	f := newFixture(t, lbEnv)
	// a short health timeout, so that the bad version is refused quickly
	svcYAML := filepath.Join(f.proj.Root, "services", "hello", "service.yaml")
	y, _ := os.ReadFile(svcYAML)
	os.WriteFile(svcYAML, []byte(strings.Replace(string(y), "timeout: 10s", "timeout: 3s", 1)), 0o644)
	f.proj.GitInit(t, "v1", "v2")
	commitBad(t, f.proj.Root)
	ctx := context.Background()
	env := f.proj.Env
	f.must(t, f.r.EnvStartAll(ctx, env))
	url := f.lbURL(t)
	hosts := f.hosts(t)
	if got := httpGet(t, url+"/"); got != "Hello World!\n" {
		t.Fatalf("through the load balancer: %q", got)
	}

	t.Run("KillWorker", func(t *testing.T) {
		start := time.Now()
		stop := load(t, url+"/", 30*time.Second)
		time.Sleep(5 * time.Second)
		f.must(t, f.r.ImageStop(ctx, env, "w3"))
		time.Sleep(time.Until(start.Add(30 * time.Second)))
		st := stop()
		t.Logf("worker w3 killed under load: %s", st)
		if st.Failed != 0 || st.Sent < 1400 {
			t.Errorf("%d of %d requests failed: %v", st.Failed, st.Sent, st.Errors)
		}
		f.must(t, f.r.EnvStartWorker(ctx, env, "w3")) // back for the next cases
	})

	t.Run("RollingDeploy", func(t *testing.T) {
		stop := load(t, url+"/", time.Minute)
		time.Sleep(time.Second)
		f.must(t, f.r.ServiceDeploy(ctx, env, "hello", "v2"))
		time.Sleep(time.Second)
		st := stop()
		t.Logf("rolling deploy of v2 under load: %s", st)
		if st.Failed != 0 {
			t.Errorf("%d of %d requests failed: %v", st.Failed, st.Sent, st.Errors)
		}
		after, err := loadgen.Run(ctx, loadgen.Options{URL: url + "/version", Duration: time.Second, Rate: 60})
		if err != nil {
			t.Fatal(err)
		}
		if after.Bodies["v2"] != after.Sent || after.Sent == 0 {
			t.Errorf("after the deploy the load balancer answered %v", after.Bodies)
		}
	})

	t.Run("BadVersionRefused", func(t *testing.T) {
		stop := load(t, url+"/", time.Minute)
		time.Sleep(time.Second)
		err := f.r.ServiceDeploy(ctx, env, "hello", "bad")
		time.Sleep(time.Second)
		st := stop()
		t.Logf("refused deploy of a bad version under load: %s", st)
		if err == nil || !strings.Contains(err.Error(), "batch 1 of 3") {
			t.Errorf("deploy of a bad version: err = %v", err)
		}
		if st.Failed != 0 {
			t.Errorf("%d of %d requests failed: %v", st.Failed, st.Sent, st.Errors)
		}
		for _, w := range []string{"w1", "w2", "w3"} {
			if got := httpGet(t, "http://"+hosts[w].IP+":8080/version"); got != "v2\n" {
				t.Errorf("%s serves %q after the refused deploy, want v2", w, got)
			}
		}
		f.out.Reset()
		f.r.HostsRun(ctx, env+"/workers", "ls /opt/booted/hello/releases")
		if n := strings.Count(f.out.String(), "bad"); n > 1 {
			t.Errorf("the bad version reached more than the first batch:\n%s", f.out)
		}
		if h := f.hosts(t); h["w1"].State != "serving" || h["w2"].State != "serving" || h["w3"].State != "serving" {
			t.Errorf("workers after the refused deploy: %+v", h)
		}
	})

	// hosts:rebuild of a serving worker under load: no request fails, the
	// worker comes back with a new host key on the version it ran, and
	// its old key is refused from then on.
	t.Run("Rebuild", func(t *testing.T) {
		old := f.hosts(t)["w2"]
		oldKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(old.HostKey))
		if err != nil {
			t.Fatal(err)
		}
		stop := load(t, url+"/", 3*time.Minute)
		time.Sleep(time.Second)
		f.must(t, f.r.HostsRebuild(ctx, env, "w2"))
		time.Sleep(time.Second)
		st := stop()
		t.Logf("hosts:rebuild of w2 under load: %s", st)
		if st.Failed != 0 || st.Sent == 0 {
			t.Errorf("%d of %d requests failed: %v", st.Failed, st.Sent, st.Errors)
		}
		now := f.hosts(t)["w2"]
		if now.State != "serving" || now.HostKey == old.HostKey || now.HostKey == "" {
			t.Errorf("w2 after the rebuild: %s, key %q (was %q)", now.State, now.HostKey, old.HostKey)
		}
		if got := httpGet(t, "http://"+now.IP+":8080/version"); got != "v2\n" {
			t.Errorf("w2 serves %q after the rebuild, want v2 (what it ran)", got)
		}
		// The old key is refused: booted's pin for w2 is the new key, and a
		// host offering the old one is not w2 any more.
		var dialErr error
		f.must(t, f.r.withEnv(ctx, env, func(s *session) error {
			c, err := remote.Dial(ctx, remote.Target{Name: "w2", Addr: now.IP, HostKey: oldKey}, remote.Auth{User: "root", Signer: s.Signer}, 10*time.Second)
			if err == nil {
				c.Close()
			}
			dialErr = err
			return nil
		}))
		var hk *remote.HostKeyError
		if !errors.As(dialErr, &hk) {
			t.Errorf("w2 with its old key pinned: %v; want HOST KEY CHANGED", dialErr)
		}
		f.out.Reset()
		f.must(t, f.r.HostsRun(ctx, env+"/w2", "true")) // and booted reaches it with the new one
	})

	t.Run("RefusedConfigNeverApplied", func(t *testing.T) {
		tmpl := filepath.Join(f.proj.Root, "nginx", "lb.conf.tmpl")
		good, _ := os.ReadFile(tmpl)
		defer os.WriteFile(tmpl, good, 0o644)
		os.WriteFile(tmpl, []byte(strings.Replace(string(good), "keepalive 16;", "keepalive 16; no_such_directive;", 1)), 0o644)
		var err error
		f.r.withEnv(ctx, env, func(s *session) error {
			s.Advance(ctx, "w1", "draining", "") // a change the load balancer must follow
			err = s.Deploys().UpdateLB(ctx)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "nginx -t refused") {
			t.Fatalf("a bad configuration: err = %v", err)
		}
		f.out.Reset()
		f.r.JSON = true
		f.must(t, f.r.EnvStatus(ctx, env))
		f.r.JSON = false
		if !strings.Contains(f.out.String(), hosts["w1"].IP+":8080") {
			t.Errorf("the running configuration changed:\n%s", f.out)
		}
		if got := httpGet(t, url+"/"); got != "Hello World!\n" {
			t.Errorf("load balancer after a refused configuration: %q", got)
		}
	})

	// BOOTED_OUTPUT=json: hosts:run, bench:load and nginx:restart print JSON
	// lines a program can read (the landed hosts:run printed prefixed
	// lines before its JSON, bench:load printed text).
	t.Run("JSONOutputs", func(t *testing.T) {
		f.r.JSON = true
		defer func() { f.r.JSON = false }()
		lines := func() []map[string]any {
			t.Helper()
			var out []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(f.out.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("not a JSON line: %q (%v)\n%s", l, err, f.out)
				}
				out = append(out, m)
			}
			return out
		}
		f.out.Reset()
		err := f.r.HostsRun(ctx, env+"/workers", `echo "out of $(hostname)"; echo "err of $(hostname)" >&2; [ "$(hostname)" != w2 ] || exit 3`)
		if err == nil || !strings.Contains(err.Error(), "w2") {
			t.Errorf("hosts:run with w2 exiting 3: %v", err)
		}
		ls := lines()
		if len(ls) != 4 {
			t.Fatalf("hosts:run on 3 workers: want 3 host lines and the recap, got:\n%s", f.out)
		}
		for _, l := range ls[:3] {
			h, _ := l["host"].(string)
			if l["stdout"] != "out of "+h+"\n" || l["stderr"] != "err of "+h+"\n" {
				t.Errorf("host line %v", l)
			}
			if want := map[bool]string{true: "failed", false: "ok"}[h == "w2"]; l["status"] != want {
				t.Errorf("%s: status %v, want %s", h, l["status"], want)
			}
		}
		if recap := ls[3]; recap["operation"] != "hosts:run" || fmt.Sprint(recap["failed"]) != "[w2]" {
			t.Errorf("recap line %v", recap)
		}

		f.out.Reset()
		f.must(t, f.r.BenchLoad(ctx, env, time.Second, 20))
		if ls := lines(); len(ls) != 1 || ls[0]["sent"].(float64) < 10 || ls[0]["failed"].(float64) != 0 || ls[0]["p95Seconds"].(float64) <= 0 {
			t.Errorf("bench:load: %s", f.out)
		}

		f.out.Reset()
		f.must(t, f.r.NginxRestart(ctx, env))
		if ls := lines(); len(ls) != 1 || ls[0]["pid"].(float64) <= 0 || ls[0]["listen"] == "" {
			t.Errorf("nginx:restart: %s", f.out)
		}
	})
}
