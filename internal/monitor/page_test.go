package monitor

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"booted/internal/inventory"
	"booted/internal/testutil"
)

// The status page, rendered by headless Chromium (Debian's): hosts by role
// with state, version, health and whether the load balancer routes to
// them, p95 and error rate against the SLA over the last hour (an SVG
// graph), the events; a screenshot is kept. status.json has durations in
// seconds and no zero times (the landed page was a raw JSON dump:
// nanoseconds, 0001-01-01).
func TestStatusPage_Chromium(t *testing.T) {
	testutil.RequireCommands(t, "chromium")
	f := newFake()
	f.workers = []Worker{{Name: "w1", State: inventory.Serving}, {Name: "w2", State: inventory.Serving}, {Name: "w3", State: inventory.Booting}}
	d := &Daemon{Env: f, Name: "local", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: newMetrics()}
	now := time.Now()
	for i := 60; i >= 0; i-- {
		p95 := time.Duration(40+i%7*10) * time.Millisecond
		if i < 5 {
			p95 = 180 * time.Millisecond // over the SLA lately
		}
		d.saved.History = append(d.saved.History, Status{Time: now.Add(-time.Duration(i) * time.Minute), Measure: Measure{Requests: 600, P50: p95 / 2, P95: p95, ErrorRate: float64(i%3) / 1000}})
	}
	last := d.saved.History[len(d.saved.History)-1]
	last.Health = map[string]string{"w1": "healthy", "w2": "unhealthy for 2 intervals", "w3": "booting"}
	last.Decision = "p95 180ms over the SLA 100ms for 1 of 1 intervals"
	d.saved.Last = &last
	srv, err := d.serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "http://" + srv.Addr + "/"

	chromium := func(args ...string) string { t.Helper(); return testutil.Chromium(t, args...) }
	dom := chromium("--dump-dom", url)
	for _, want := range []string{
		`<tr id="host-w2"><td>w2</td><td>serving</td><td>v1</td>`,
		`<td class="bad">unhealthy for 2 intervals</td>`,
		`<td class="ok">healthy</td>`,
		`<h3>loadbalancers</h3>`,
		`<svg id="chart"`,
		`id="p95" class="bad">180.0 ms</b>`,
		"61 intervals",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page Chromium rendered lacks %q:\n%s", want, dom)
		}
	}
	shot := filepath.Join(os.TempDir(), "booted-status-page.png")
	os.Remove(shot)
	chromium("--window-size=1100,1100", "--screenshot="+shot, url)
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Errorf("screenshot %s: %v %v", shot, st, err)
	} else {
		t.Logf("screenshot of the status page kept at %s (%d bytes)", shot, st.Size())
	}

	res, err := http.Get(url + "status.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var st struct {
		Last    struct{ P95Seconds float64 }
		Workers map[string]string
		History []struct{ P95Seconds float64 }
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Last.P95Seconds != 0.18 || st.Workers["w2"] != "unhealthy for 2 intervals" || len(st.History) != 61 || strings.Contains(string(b), "0001-01-01") {
		t.Errorf("status.json: %v\n%s", err, b)
	}
}

// The status page is not an amplifier: twenty clients at once, and again
// right after, cost one look at the hosts, not one each.
func TestStatusPage_OneOverviewForManyRequests(t *testing.T) {
	f := newFake()
	f.workers = []Worker{{Name: "w1", State: inventory.Serving}}
	d := &Daemon{Env: f, Name: "local", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: newMetrics()}
	srv, err := d.serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Get("http://" + srv.Addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(b), `id="host-w1"`) {
				t.Errorf("page: %d %.200s", res.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	f.mu.Lock()
	n := f.overviews
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("20 requests made %d looks at the hosts, want 1", n)
	}
}

// A tenant's page is made of their hosts and those hosts' events alone.
func TestOverview_Only(t *testing.T) {
	ov := Overview{Hosts: []PageHost{{Name: "i-1"}, {Name: "w1"}, {Name: "i-2"}},
		Events: []inventory.Event{{Host: "i-1", Kind: "a"}, {Host: "w1", Kind: "b"}, {Host: "", Kind: "c"}, {Host: "i-2", Kind: "d"}}}
	got := ov.Only(map[string]bool{"i-1": true, "i-2": true})
	var names, kinds []string
	for _, h := range got.Hosts {
		names = append(names, h.Name)
	}
	for _, e := range got.Events {
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(names, ",") != "i-1,i-2" || strings.Join(kinds, ",") != "a,d" {
		t.Errorf("Only: hosts %v events %v, want i-1,i-2 and a,d", names, kinds)
	}
	if got := ov.Only(nil); len(got.Hosts)+len(got.Events) != 0 {
		t.Errorf("Only(nothing): %+v", got)
	}
}
