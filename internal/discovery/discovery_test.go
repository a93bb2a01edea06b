package discovery_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"booted/internal/bootlog"
	"booted/internal/controller"
	"booted/internal/discovery"
	"booted/internal/inventory"
	"booted/internal/pgtest"
	"booted/internal/testutil"
)

func newKey(t testing.TB) ssh.PublicKey {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func logLine(remote, args string) string {
	b, _ := json.Marshal(map[string]string{"time": "2026-11-22T10:00:00+00:00", "remote": remote, "method": "GET", "args": args, "status": "200"})
	return string(b) + "\n"
}

func newDiscoverer(t testing.TB, log string) *discovery.Discoverer {
	return newDiscovererIn(t, log, filepath.Join(t.TempDir(), "booted.db"))
}

// newDiscovererIn is newDiscoverer with its inventory at where.
func newDiscovererIn(t testing.TB, log, where string) *discovery.Discoverer {
	store, err := inventory.Open(context.Background(), where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &discovery.Discoverer{
		Store: store, Env: "local", Log: log, Provider: "local", Poll: 5 * time.Millisecond,
		Declared: func(n string) (string, bool) {
			if strings.HasPrefix(n, "w") || strings.HasPrefix(n, "h") {
				return "workers", true
			}
			return "", false
		},
	}
}

// enroll issues host name a token (a provisioning), good for an hour.
func enroll(t testing.TB, d *discovery.Discoverer, names ...string) map[string]string {
	t.Helper()
	tokens := map[string]string{}
	err := d.Store.Update(context.Background(), func(tx *inventory.Tx) error {
		for _, n := range names {
			tokens[n] = bootlog.NewToken()
			if err := tx.Issue(d.Env, n, bootlog.HashToken(tokens[n]), time.Now().Add(time.Hour), ""); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

func TestDiscoverer_AcceptsOnlyGoodCallbacks(t *testing.T) {
	ctx := context.Background()
	log := filepath.Join(t.TempDir(), "booted.log")
	d := newDiscoverer(t, log)
	tok := enroll(t, d, "w1", "w2", "w3", "x9")
	k1, k2 := newKey(t), newKey(t)
	lines := logLine("10.77.0.11", bootlog.Query("w1", tok["w1"], k1)) +
		logLine("10.77.0.66", bootlog.Query("w2", tok["w1"], k2)) + // w1's token for w2
		logLine("10.77.0.66", bootlog.Query("w3", bootlog.NewToken(), k2)) + // a guessed token
		logLine("10.77.0.67", bootlog.Query("x9", tok["x9"], k2)) + // not declared
		logLine("10.77.0.68", "name=w4&token=abc") + // no key
		"this is not json\n" +
		`{"time":"2026-11-22T10:00:00+00:00","remote":"10.0.0.1"` + "\n"
	os.WriteFile(log, []byte(lines), 0o644)
	if err := d.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.CatchUp(ctx); err != nil { // nothing new: nothing counted twice
		t.Fatal(err)
	}
	hosts, _ := d.Store.Hosts(ctx, "local")
	if len(hosts) != 1 || hosts[0].Name != "w1" {
		t.Fatalf("hosts = %+v, want only w1", hosts)
	}
	h := hosts[0]
	if h.State != inventory.Booted || h.Addr != "10.77.0.11" || h.Role != "workers" || h.HostKey != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k1))) {
		t.Errorf("w1 recorded as %+v", h)
	}
	c, _ := d.Store.Counters(ctx, "local")
	want := map[string]int64{discovery.CountAccepted: 1, discovery.CountForged: 2, discovery.CountUnknown: 1, discovery.CountMalformed: 1, discovery.CountGarbled: 2}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, c[k], v, c)
		}
	}
	// A host that is draining may not be booted by a callback.
	d.Store.Transition(ctx, "local", "w1", inventory.Ready, "")
	d.Store.Transition(ctx, "local", "w1", inventory.Serving, "")
	d.Store.Transition(ctx, "local", "w1", inventory.Draining, "")
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	tok = enroll(t, d, "w1") // a new provisioning
	f.WriteString(logLine("10.77.0.11", bootlog.Query("w1", tok["w1"], k1)))
	f.Close()
	d.CatchUp(ctx)
	if h, _ := d.Store.Host(ctx, "local", "w1"); h.State != inventory.Draining {
		t.Errorf("draining host moved to %s by a callback", h.State)
	}
	if c, _ := d.Store.Counters(ctx, "local"); c[discovery.CountRefused] != 1 {
		t.Errorf("refused = %d", c[discovery.CountRefused])
	}
}

// Ensure two followers of one log (the CLI and the daemon) take each line once.
func TestDiscoverer_TwoFollowersTakeEachLineOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := filepath.Join(t.TempDir(), "booted.log")
	os.WriteFile(log, nil, 0o644)
	a := newDiscoverer(t, log)
	b := *a // same store, own follower
	var wg sync.WaitGroup
	for _, d := range []*discovery.Discoverer{a, &b} {
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx) }()
	}
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	const n = 300
	tok := enroll(t, a, hostNames(n)...)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%d", i)
		f.WriteString(logLine("10.0.0.1", bootlog.Query(name, tok[name], newKey(t))))
	}
	f.Close()
	waitAccepted(t, a, n)
	cancel()
	wg.Wait()
	assertBootedOnce(t, a, n)
}

func hostNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d", i)
	}
	return out
}

func waitAccepted(t testing.TB, d *discovery.Discoverer, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := d.Store.Counters(context.Background(), d.Env)
		if err != nil {
			t.Fatal(err)
		}
		if c[discovery.CountAccepted] >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d callbacks, want %d", c[discovery.CountAccepted], n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertBootedOnce checks n hosts are booted, each by exactly one event.
func assertBootedOnce(t *testing.T, d *discovery.Discoverer, n int) {
	t.Helper()
	ctx := context.Background()
	hosts, _ := d.Store.Hosts(ctx, d.Env)
	if len(hosts) != n {
		t.Errorf("%d hosts recorded, want %d", len(hosts), n)
	}
	evs, _ := d.Store.Events(ctx, d.Env, "", 10*n)
	per := map[string]int{}
	for _, e := range evs {
		if e.Kind == "state" && e.To == inventory.Booted {
			per[e.Host]++
		}
	}
	var twice []string
	for h, c := range per {
		if c != 1 {
			twice = append(twice, h)
		}
	}
	sort.Strings(twice)
	if len(per) != n || len(twice) > 0 {
		t.Errorf("%d hosts booted by events, want %d; taken more than once: %v", len(per), n, twice)
	}
	c, _ := d.Store.Counters(ctx, d.Env)
	if c[discovery.CountAccepted] != int64(n) {
		t.Errorf("accepted %d, want %d", c[discovery.CountAccepted], n)
	}
}

// sendCallbacks sends the enrollment callbacks of hosts h0..h(n-1) to the
// controller's nginx from 8 clients (each retrying, as the phone-home
// script does), restarting nginx (a new boot log) at each of restartAt.
func sendCallbacks(t testing.TB, ctx context.Context, ctl *controller.Controller, tok map[string]string, n int, restartAt ...int) {
	key := newKey(t)
	client := &http.Client{Timeout: 5 * time.Second}
	jobs := make(chan int)
	var failed sync.Map
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				name := fmt.Sprintf("h%d", i)
				u := "http://" + ctl.Listen + "/booted/?" + bootlog.Query(name, tok[name], key)
				var err error
				for try := 0; try < 20; try++ {
					var resp *http.Response
					if resp, err = client.Get(u); err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							break
						}
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err != nil {
					failed.Store(name, err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		for _, r := range restartAt {
			if i == r {
				if _, err := ctl.Restart(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("callback %v not sent: %v", k, v); return true })
}

func startController(t testing.TB) *controller.Controller {
	testutil.RequireLocalHosts(t)
	proj := testutil.NewProject(t, testutil.DefaultEnv)
	ctl := proj.Controller(t)
	ctl.Listen = testutil.FreePort(t)
	if err := ctl.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Stop(context.Background()) })
	return ctl
}

// Ensure 1,000 callbacks sent to a real nginx while it is restarted twice
// are all discovered, none twice.
func TestDiscoverer_ThousandCallbacksAcrossRestarts(t *testing.T) {
	ctl := startController(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newDiscoverer(t, ctl.BootLog)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	const n = 1000
	sendCallbacks(t, ctx, ctl, enroll(t, d, hostNames(n)...), n, n/3, 2*n/3)
	waitAccepted(t, d, n)
	cancel()
	<-done
	assertBootedOnce(t, d, n)
	rotated, _ := filepath.Glob(ctl.BootLog + ".*")
	t.Logf("%d callbacks, 2 restarts, %d rotated logs", n, len(rotated))
	if len(rotated) != 2 {
		t.Errorf("%d rotated logs, want 2", len(rotated))
	}
}

// Ensure 10,000 callbacks sent across two nginx:restarts with no discovery
// running meanwhile are all found, each once, when discovery first runs:
// it reads the rotated logs before the live one.
func TestDiscoverer_TenThousandColdAcrossRestarts(t *testing.T) {
	ctl := startController(t)
	ctx := context.Background()
	d := newDiscoverer(t, ctl.BootLog)
	const n = 10000
	sendCallbacks(t, ctx, ctl, enroll(t, d, hostNames(n)...), n, n/3, 2*n/3)
	start := time.Now()
	if err := d.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("caught up with %d callbacks in 3 logs in %v", n, time.Since(start).Round(time.Millisecond))
	assertBootedOnce(t, d, n)
}

// BenchmarkDiscoveryCatchUp measures discovery of 1,000 and 10,000
// callbacks (sent to a real nginx beforehand, across two restarts) into a
// SQLite file and into PostgreSQL: the time to record them all (each
// verified, its token used, the host booted, its key pinned), reported as
// callbacks a second, and the inventory's size after.
func BenchmarkDiscoveryCatchUp(b *testing.B) {
	ctl := startController(b)
	ctx := context.Background()
	for _, n := range []int{1000, 10000} {
		for _, engine := range []string{"SQLite", "PostgreSQL"} {
			b.Run(fmt.Sprintf("%s/%d", engine, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					where := filepath.Join(b.TempDir(), "booted.db")
					if engine == "PostgreSQL" {
						where = pgtest.URL(b)
					}
					if _, err := ctl.Restart(ctx); err != nil { // the last run's callbacks to a rotated log
						b.Fatal(err)
					}
					rotated, _ := filepath.Glob(ctl.BootLog + ".*")
					for _, r := range rotated {
						os.Remove(r)
					}
					d := newDiscovererIn(b, ctl.BootLog, where)
					sendCallbacks(b, ctx, ctl, enroll(b, d, hostNames(n)...), n, n/3, 2*n/3)
					b.StartTimer()
					start := time.Now()
					if err := d.CatchUp(ctx); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(n)/time.Since(start).Seconds(), "callbacks/s")
					b.StopTimer()
					size, _ := d.Store.Size(ctx)
					b.ReportMetric(float64(size)/1e6, "inventory-MB")
					b.StartTimer()
				}
			})
		}
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// BenchmarkDiscoveryLatency measures the time from a callback sent to the
// controller's nginx to the host recorded as booted; it reports p50 and p99.
func BenchmarkDiscoveryLatency(b *testing.B) {
	testutil.RequireLocalHosts(b)
	proj := testutil.NewProject(b, testutil.DefaultEnv)
	ctl := proj.Controller(b)
	ctl.Listen = testutil.FreePort(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := ctl.Ensure(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ctl.Stop(context.Background()) })
	d := newDiscoverer(b, ctl.BootLog)
	d.Poll = 0 // the default, as booted runs it
	booted := make(chan string, 16)
	d.OnBooted = func(names []string) {
		for _, n := range names {
			booted <- n
		}
	}
	go d.Run(ctx)
	key := newKey(b)
	tok := enroll(b, d, hostNames(b.N)...)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("h%d", i)
		start := time.Now()
		resp, err := http.Get("http://" + ctl.Listen + "/booted/?" + bootlog.Query(name, tok[name], key))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		select {
		case got := <-booted:
			if got != name {
				b.Fatalf("booted %s, want %s", got, name)
			}
		case <-time.After(10 * time.Second):
			b.Fatalf("%s never recorded", name)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// The sites' callbacks (passed on by their conductors) are taken as the
// boot log's, each once (two discoverers reading the same sequence), and
// only for a host of the site they came from.
func TestDiscoverer_SitedCallbacksOnceAndFromTheirSite(t *testing.T) {
	ctx := context.Background()
	d := newDiscoverer(t, filepath.Join(t.TempDir(), "booted.log"))
	tok := enroll(t, d, "w1", "w2")
	k1, k2 := newKey(t), newKey(t)
	sited := []discovery.SitedLine{
		{Seq: 3, Site: "b", Line: []byte(logLine("10.84.0.12", bootlog.Query("w2", tok["w2"], k2)))}, // w2 is site a's
		{Seq: 7, Site: "a", Line: []byte(logLine("10.84.0.11", bootlog.Query("w1", tok["w1"], k1)))},
	}
	var asked []uint64
	d.Sited = func(_ context.Context, after uint64) ([]discovery.SitedLine, error) {
		asked = append(asked, after)
		var out []discovery.SitedLine
		for _, l := range sited {
			if l.Seq > after {
				out = append(out, l)
			}
		}
		return out, nil
	}
	d.SiteOf = func(string) string { return "a" }
	other := *d // another process on the same inventory
	for _, dd := range []*discovery.Discoverer{d, &other, d} {
		if err := dd.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	hosts, _ := d.Store.Hosts(ctx, "local")
	if len(hosts) != 1 || hosts[0].Name != "w1" || hosts[0].State != inventory.Booted || hosts[0].Addr != "10.84.0.11" {
		t.Fatalf("hosts = %+v, want w1 alone, booted at 10.84.0.11", hosts)
	}
	c, _ := d.Store.Counters(ctx, "local")
	if c[discovery.CountAccepted] != 1 || c[discovery.CountForged] != 1 {
		t.Errorf("counters %v, want 1 accepted (w1), 1 forged (w2 from site b)", c)
	}
	if fmt.Sprint(asked) != "[0 7 7 7]" {
		t.Errorf("sequence numbers asked after: %v, want from 0, then 7 on", asked)
	}
}
