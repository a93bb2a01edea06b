package monitor

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"booted/internal/inventory"
	"booted/internal/testutil"
)

// /metrics passes `promtool check metrics` (the landed one put a quantile
// label on a gauge) and says what an operator looks for: each worker's
// health (a dead one is 0), workers by state, a latency histogram and
// request and error counters that add up over intervals, actions by kind.
func TestMetrics_PromtoolAndContent(t *testing.T) {
	testutil.RequireCommands(t, "promtool")
	m := newMetrics()
	workers := []Worker{{Name: "w1", State: inventory.Serving}, {Name: "w2", State: inventory.Serving}, {Name: "w3", State: inventory.Booting}}
	m.interval(Measure{Requests: 3, Failed: 1, ErrorRate: 1.0 / 3, Latencies: []time.Duration{2 * time.Millisecond, 30 * time.Millisecond, 2 * time.Second}},
		workers, map[string]bool{"w1": true})
	m.interval(Measure{Requests: 2, Latencies: []time.Duration{time.Millisecond, time.Millisecond}}, workers[:2], map[string]bool{"w1": true})
	m.action(ScaleUp)
	m.setInFlight(true)

	srv := httptest.NewServer(m.handler())
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	body := string(b)

	testutil.CheckMetrics(t, body)
	for _, want := range []string{
		`booted_worker_healthy{state="serving",worker="w1"} 1`,
		`booted_worker_healthy{state="serving",worker="w2"} 0`,
		`booted_workers{state="serving"} 2`,
		`booted_requests_total 5`,
		`booted_request_errors_total 1`,
		`booted_request_duration_seconds_count 5`,
		`booted_request_duration_seconds_bucket{le="0.005"} 3`,
		`booted_scaling_actions_total{kind="scale-up"} 1`,
		`booted_scaling_actions_total{kind="scale-down"} 0`,
		`booted_action_in_flight 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `worker="w3"`) {
		t.Errorf("w3, gone from the workers, is still on /metrics:\n%s", body)
	}
}
