package monitor

import (
	"strings"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
)

func policy() config.Monitor {
	return config.Monitor{
		SLA: config.SLA{P95: config.Duration(100 * time.Millisecond), ErrorRate: 0.01}, BreachIntervals: 2, CalmIntervals: 3, LowWater: 0.5,
		CooldownUp: config.Duration(20 * time.Second), CooldownDown: config.Duration(60 * time.Second), Warmup: config.Duration(10 * time.Second), UnhealthyIntervals: 2,
	}
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func serving(names ...string) []Worker {
	var ws []Worker
	for _, n := range names {
		ws = append(ws, Worker{Name: n, State: inventory.Serving, Since: t0.Add(-time.Hour)})
	}
	return ws
}

func TestDecide(t *testing.T) {
	slow := Measure{Requests: 100, P95: 300 * time.Millisecond}
	fast := Measure{Requests: 100, P95: 20 * time.Millisecond}
	ok := Measure{Requests: 100, P95: 80 * time.Millisecond}
	names := []string{"w1", "w2", "w3", "w4"}
	for _, tc := range []struct {
		name       string
		st         State
		m          Measure
		kind, host string
		breach     int
		calm       int
		why        string
	}{
		{"one breach is not enough", State{Workers: serving("w1")}, slow, "", "", 1, 0, "p95 300ms"},
		{"second breach scales up, new name", State{Workers: serving("w1"), Breach: 1}, slow, ScaleUp, "w2", 0, 0, "over the SLA for 2 intervals"},
		{"a stopped worker is started first", State{Workers: append(serving("w1"), Worker{Name: "w3", State: inventory.Stopped}), Breach: 1}, slow, ScaleUp, "w3", 0, 0, ""},
		{"errors breach too", State{Workers: serving("w1"), Breach: 1}, Measure{Requests: 100, P95: time.Millisecond, ErrorRate: 0.05}, ScaleUp, "w2", 0, 0, "errors 5.0%"},
		{"never above max", State{Workers: serving("w1", "w2", "w3", "w4"), Breach: 5}, slow, "", "", 6, 0, "already at max 4"},
		{"cooldown after a scale-up", State{Workers: serving("w1", "w2"), Breach: 1, LastUp: t0.Add(-5 * time.Second)}, slow, "", "", 2, 0, "cooling down after the last scale-up (15s left)"},
		{"in flight: nothing new", State{Workers: serving("w1"), Breach: 9, InFlight: &Action{Kind: ScaleUp, Host: "w2", Start: t0.Add(-3 * time.Second)}}, slow, "", "", 9, 0, "waiting for scale-up of w2"},
		{"a draining worker is put back rather than a new one", State{Workers: append(serving("w1"), Worker{Name: "w2", State: inventory.Draining}), Breach: 1}, slow, CancelDrain, "w2", 0, 0, ""},
		{"warm-up: measurements do not count", State{Workers: []Worker{{Name: "w1", State: inventory.Serving, Since: t0.Add(-3 * time.Second)}}, Breach: 1}, slow, "", "", 1, 0, "warming up"},
		{"calm long enough scales down the newest", State{Workers: append(serving("w1", "w2"), Worker{Name: "w3", State: inventory.Serving, Since: t0.Add(-time.Minute * 30)}), Calm: 2}, fast, ScaleDown, "w3", 0, 0, "under 50% of the SLA for 3 intervals"},
		{"never below min", State{Workers: serving("w1"), Calm: 9}, fast, "", "", 0, 10, "already at min 1"},
		{"cooldown before scaling down", State{Workers: serving("w1", "w2"), Calm: 2, LastUp: t0.Add(-30 * time.Second)}, fast, "", "", 0, 3, "cooling down"},
		{"in between resets the counters", State{Workers: serving("w1", "w2"), Calm: 2, Breach: 1}, ok, "", "", 0, 0, "2 workers serving"},
		{"no traffic: nothing counts", State{Workers: serving("w1", "w2"), Calm: 2}, Measure{}, "", "", 0, 0, ""},
		{"below min is fixed at once", State{Workers: []Worker{{Name: "w1", State: inventory.Failed}}}, fast, ScaleUp, "w1", 0, 0, "below min 1"},
		{"an unhealthy worker is replaced", State{Workers: []Worker{{Name: "w1", State: inventory.Serving, Since: t0.Add(-time.Hour), UnhealthyFor: 2}, {Name: "w2", State: inventory.Serving, Since: t0.Add(-time.Hour)}}}, ok, Replace, "w1", 0, 0, "health check failed 2 intervals"},
		{"one unhealthy interval is tolerated", State{Workers: []Worker{{Name: "w1", State: inventory.Serving, Since: t0.Add(-time.Hour), UnhealthyFor: 1}}}, ok, "", "", 0, 0, ""},
		{"no free name", State{Workers: serving("w1"), Breach: 1, Names: []string{"w1"}}, slow, "", "", 2, 0, "no worker name is free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.st.Now = t0
			if tc.st.Names == nil {
				tc.st.Names = names
			}
			d := Decide(policy(), 1, 4, tc.st, tc.m)
			kind, host := "", ""
			if d.Action != nil {
				kind, host = d.Action.Kind, d.Action.Host
			}
			if kind != tc.kind || host != tc.host {
				t.Errorf("action %s %s, want %s %s (why: %s)", kind, host, tc.kind, tc.host, d.Why)
			}
			if tc.kind == "" && (d.Breach != tc.breach || d.Calm != tc.calm) {
				t.Errorf("breach %d calm %d, want %d %d", d.Breach, d.Calm, tc.breach, tc.calm)
			}
			if !strings.Contains(d.Why, tc.why) {
				t.Errorf("why %q lacks %q", d.Why, tc.why)
			}
		})
	}
}
