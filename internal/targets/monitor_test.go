package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	sess "booted/internal/session"

	"booted/internal/inventory"
	"booted/internal/monitor"
	"booted/internal/provider"
	"booted/internal/testutil"
)

func monitorEnvFile(t *testing.T) testutil.EnvFile {
	return testutil.Workers(1, 3) + testutil.Hello + testutil.EnvFile(`monitor:
  interval: 1s
  sla: {p95: 30ms, error_rate: 0.01}
  breach_intervals: 2
  calm_intervals: 3
  low_water: 0.5
  cooldown_up: 3s
  cooldown_down: 3s
  warmup: 2s
  unhealthy_intervals: 2
  probe_rate: 10
  listen: `+testutil.FreePort(t)+"\n")
}

// newMonitorFixture: a load balancer and one worker running a hello whose
// response time grows with its load (10 ms up to 20 requests a second, then
// in proportion). At 80 requests a second one worker answers in ~45 ms (SLA
// 30 ms), two in ~17-23 ms, and the probes alone (10/s) in ~10 ms, under the
// low-water mark (15 ms), with room for this machine's noise either side.
// (At 0.6, 18 ms, two workers under the load measured 17 ms once in CI and
// were scaled down before the kill of one of them.)
func newMonitorFixture(t *testing.T) *fixture {
	testutil.RequireLocalHosts(t)
	testutil.ExclusiveCPU(t) // it measures latency: no TCG VM meanwhile
	f := newFixture(t, monitorEnvFile(t))
	svc := filepath.Join(f.proj.Root, "services", "hello", "service.yaml")
	y, _ := os.ReadFile(svc)
	os.WriteFile(svc, []byte(strings.Replace(string(y), "start: ./hello -addr :{{.Port}}", "start: ./hello -addr :{{.Port}} -base 10ms -capacity 20", 1)), 0o644)
	f.proj.GitInit(t, "v1")
	f.must(t, f.r.EnvStartAll(context.Background(), f.proj.Env))
	return f
}

func (f *fixture) serving(t *testing.T) []string {
	var out []string
	for n, h := range f.hosts(t) {
		if h.State == "serving" && strings.HasPrefix(n, "w") {
			out = append(out, n)
		}
	}
	return out
}

func (f *fixture) waitFor(t *testing.T, what string, d time.Duration, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > d {
			f.out.Reset()
			f.r.MonitorStatus(context.Background(), f.proj.Env)
			t.Fatalf("%s: not within %v\n%s", what, d, f.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

func (f *fixture) monitorState(t *testing.T) monitor.Saved {
	var sv monitor.Saved
	f.r.withEnv(context.Background(), f.proj.Env, func(s *session) error {
		return s.Store.Update(context.Background(), func(tx *inventory.Tx) error { _, err := tx.Get(s.Env.Name, "monitor/state", &sv); return err })
	})
	return sv
}

// The monitor adds a worker when load breaks the SLA, replaces a worker
// whose host dies (no client request failing), and removes workers down
// to min when the load goes.
func TestMonitor_ScalesAndHeals(t *testing.T) {
	f := newMonitorFixture(t)
	env := f.proj.Env
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.r.MonitorRun(ctx, env) }()
	defer func() { cancel(); <-done }()
	url := f.lbURL(t)

	// Up: 80 requests a second take ~45 ms on one worker (SLA p95 30 ms).
	stop := load(t, url+"/", 2*time.Minute)
	loadStart := time.Now()
	took := f.waitFor(t, "a second worker serving", 40*time.Second, func() bool { return len(f.serving(t)) >= 2 })
	t.Logf("load raised: a second worker was serving %v after the load started", took.Round(time.Millisecond))
	f.reportScaleUp(t, loadStart)
	f.waitFor(t, "the SLA holding again", 20*time.Second, func() bool {
		l := f.monitorState(t).Last
		return l != nil && l.Measure.Requests > 0 && l.Measure.P95 <= 30*time.Millisecond
	})
	// The real daemon's /metrics under load, read by Prometheus's own
	// checker, and its page as Chromium builds it.
	p, _, _, _ := sess.NewMonitorEnv(mustSession(t, f).Session).Policy()
	loaded := httpGet(t, "http://"+p.Listen+"/metrics")
	testutil.CheckMetrics(t, loaded)
	if !strings.Contains(loaded, `booted_workers{state="serving"} 2`) || !regexp.MustCompile(`booted_requests_total [1-9]`).MatchString(loaded) {
		t.Errorf("/metrics under load: want 2 serving workers and requests counted:\n%s", loaded)
	}
	dom := testutil.Chromium(t, "--dump-dom", "http://"+p.Listen+"/")
	if !regexp.MustCompile(`<tr id="host-w\d"><td>w\d</td><td>serving</td><td>v1</td>`).MatchString(dom) || !strings.Contains(dom, `<svg id="chart"`) || !strings.Contains(dom, "booted · environment "+env) {
		t.Errorf("the monitor's page as Chromium built it:\n%s", dom)
	}

	// Heal: kill one worker's host outright, behind booted's back.
	victim := f.serving(t)[0]
	f.must(t, f.r.withEnv(ctx, env, func(s *session) error { return s.Provs.ByType[s.Env.Provider.Type].(provider.Power).Stop(ctx, victim) }))
	killed := time.Now()
	f.waitFor(t, victim+" replaced", 30*time.Second, func() bool {
		for _, e := range f.events(t, victim) {
			if e.Kind == "state" && e.To == inventory.Serving && e.Time.After(killed) {
				return true
			}
		}
		return false
	})
	t.Logf("worker %s killed: serving again after %v", victim, time.Since(killed).Round(time.Millisecond))
	st := stop()
	t.Logf("load during scale-up and the kill: %s", st)
	if st.Failed != 0 {
		t.Errorf("%d of %d client requests failed: %v", st.Failed, st.Sent, st.Errors)
	}

	// Down: without the load, back to min (1) worker.
	took = f.waitFor(t, "scaled down to min", 60*time.Second, func() bool { return len(f.serving(t)) == 1 })
	t.Logf("load lowered: down to 1 worker after %v", took.Round(time.Millisecond))
	f.out.Reset()
	f.must(t, f.r.MonitorStatus(ctx, env))
	for _, want := range []string{"decision:", "scale-up started", "scale-down started", "replace started"} {
		if !strings.Contains(f.out.String(), want) {
			t.Errorf("monitor:status lacks %q:\n%s", want, f.out)
		}
	}
	// /metrics
	var body string
	f.waitFor(t, "/metrics showing one serving worker", 10*time.Second, func() bool {
		body = httpGet(t, "http://"+p.Listen+"/metrics")
		return strings.Contains(body, `booted_workers{state="serving"} 1`)
	})
	// The status page, with the hosts as they are: the serving worker's
	// version read on it, the load balancer routing to it.
	page := httpGet(t, "http://"+p.Listen+"/")
	if !regexp.MustCompile(`<tr id="host-(w\d)"><td>w\d</td><td>serving</td><td>v1</td>`).MatchString(page) || !strings.Contains(page, "<td>routed</td>") {
		t.Errorf("the status page:\n%s", page)
	}
	testutil.CheckMetrics(t, body)
	for _, want := range []string{`booted_scaling_actions_total{kind="scale-up"} `, `booted_scaling_actions_total{kind="replace"} 1`, "booted_request_duration_seconds_count ", `booted_worker_healthy{state="serving",worker=`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func mustSession(t *testing.T, f *fixture) *session {
	s, err := f.r.open(context.Background(), f.proj.Env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (f *fixture) events(t *testing.T, host string) []inventory.Event {
	s := mustSession(t, f)
	evs, err := s.Store.Events(context.Background(), f.proj.Env, host, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// reportScaleUp logs the time from the scale-up decision to the new worker
// serving.
func (f *fixture) reportScaleUp(t *testing.T, loadStart time.Time) {
	var decided time.Time
	var host string
	for _, e := range f.events(t, "") {
		if e.Kind == "monitor-action" && strings.HasPrefix(e.Detail, "scale-up started") && decided.IsZero() {
			decided, host = e.Time, e.Host
		}
		if !decided.IsZero() && e.Host == host && e.Kind == "state" && e.To == inventory.Serving {
			t.Logf("SLA breach → %s serving: %v from the scale-up decision, %v from the start of the load",
				host, e.Time.Sub(decided).Round(time.Millisecond), e.Time.Sub(loadStart).Round(time.Millisecond))
			return
		}
	}
}

// kill -9 of the daemon in the middle of a scale-up, then a restart: the
// scale-up is finished, not repeated, and no host is left over.
func TestMonitor_KilledMidScaleUp(t *testing.T) {
	f := newMonitorFixture(t)
	env := f.proj.Env
	bin := filepath.Join(t.TempDir(), "booted-monitor")
	if out, err := exec.Command("go", "build", "-o", bin, "booted/cmd/booted-monitor").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	logs := &testutil.SyncBuffer{}
	daemon := func() *exec.Cmd {
		cmd := exec.Command(bin, env)
		cmd.Env = append(os.Environ(), "BOOTED_ROOT="+f.proj.Root, "BOOTED_INVENTORY="+f.proj.Inventory)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := daemon()
	defer first.Process.Kill()
	stop := load(t, f.lbURL(t)+"/", 2*time.Minute)
	defer stop()
	var inflight *monitor.Action
	f.waitFor(t, "a scale-up in flight", 40*time.Second, func() bool {
		inflight = f.monitorState(t).InFlight
		return inflight != nil && inflight.Kind == monitor.ScaleUp
	})
	time.Sleep(300 * time.Millisecond) // mid-way: the host is being booted
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	t.Logf("daemon killed with scale-up of %s in flight", inflight.Host)
	atKill := map[string]bool{inflight.Host: true} // the workers then, and the one coming
	for n := range f.hosts(t) {
		if strings.HasPrefix(n, "w") {
			atKill[n] = true
		}
	}
	second := daemon()
	defer func() { second.Process.Signal(syscall.SIGTERM); second.Wait() }()
	f.waitFor(t, inflight.Host+" serving after the restart", 40*time.Second, func() bool {
		return f.hosts(t)[inflight.Host].State == "serving" && f.monitorState(t).InFlight == nil
	})
	stop()
	hosts := f.hosts(t)
	var workers []string
	for n := range hosts {
		if strings.HasPrefix(n, "w") {
			workers = append(workers, n)
		}
	}
	var insts []string
	f.r.withEnv(context.Background(), env, func(s *session) error {
		list, _ := s.Provs.List(context.Background())
		for _, in := range list {
			insts = append(insts, fmt.Sprintf("%s:%s", in.Name, in.State))
		}
		return nil
	})
	if hosts[inflight.Host].State != "serving" {
		t.Errorf("%s after the restart: %s", inflight.Host, hosts[inflight.Host].State)
	}
	// Not repeated: the scale-up was carried out for its host (started
	// twice: before the kill and by the reconcile; done once), no other
	// scale-up started while it was in flight, and the workers are the
	// ones there were at the kill (max 3 would let a repeat through: it
	// is not the bound that is checked).
	started, done := 0, 0
	for _, e := range f.events(t, inflight.Host) {
		if e.Kind == "monitor-action" && strings.HasPrefix(e.Detail, monitor.ScaleUp+" started") {
			started++
		}
		if e.Kind == "monitor-action" && strings.HasPrefix(e.Detail, monitor.ScaleUp+" done") {
			done++
		}
	}
	if started != 2 || done != 1 {
		t.Errorf("%s: scale-up started %d times and done %d times; want 2 (before the kill, the reconcile) and 1", inflight.Host, started, done)
	}
	for _, w := range workers {
		if !atKill[w] {
			t.Errorf("worker %s is new since the kill: the scale-up was repeated for another host (workers at the kill %v, now %v)", w, atKill, workers)
		}
	}
	for _, in := range insts {
		if name, _, _ := strings.Cut(in, ":"); hosts[name].State == "" {
			t.Errorf("the provider has %s, which the inventory does not know: a host left over", in)
		}
	}
	reconciled := false
	for _, e := range f.events(t, inflight.Host) {
		reconciled = reconciled || e.Kind == "monitor-reconcile"
	}
	if !reconciled {
		t.Errorf("no reconcile event for %s; daemon logs:\n%s", inflight.Host, logs.String())
	}
	ups := 0
	for _, e := range f.events(t, inflight.Host) {
		if e.Kind == "state" && e.To == inventory.Booting {
			ups++
		}
	}
	b, _ := json.Marshal(insts)
	t.Logf("after kill -9 and restart: workers %v, provider %s, %s booted %d time(s)", workers, b, inflight.Host, ups)
	if ups < 1 || ups > 2 {
		t.Errorf("%s booted %d times: want once, or twice where the reconcile booted it again", inflight.Host, ups)
	}

	// SIGHUP reloads the env file; a broken one keeps the old policy.
	path := filepath.Join(f.proj.Root, "envs", env+".yaml")
	y, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(y), "max: 3", "max: 4", 1)), 0o644)
	second.Process.Signal(syscall.SIGHUP)
	f.waitFor(t, "the reloaded policy", 10*time.Second, func() bool {
		for _, e := range f.events(t, "") {
			if e.Kind == "monitor-reload" && strings.Contains(e.Detail, "max 4") {
				return true
			}
		}
		return false
	})
	os.WriteFile(path, []byte(strings.Replace(string(y), "max: 3", "max: many", 1)), 0o644)
	second.Process.Signal(syscall.SIGHUP)
	f.waitFor(t, "the broken env file refused", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "keeping the old policy")
	})
	if l := logs.String(); !strings.Contains(l, env+".yaml") {
		t.Errorf("the reload error does not name the env file:\n%s", l)
	}
}

// open opens envName as a target does (session.Open), for the tests.
func (r *Runner) open(ctx context.Context, envName string) (*session, error) {
	s, err := sess.Open(ctx, r.Options, envName)
	if err != nil {
		return nil, err
	}
	return &session{Session: s, r: r}, nil
}
