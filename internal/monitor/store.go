package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
)

// Kept is the daemon's state and its events, kept in the inventory: the
// Load, Save and Event part of an Env.
type Kept struct {
	Store *inventory.Store
	Env   string
}

const stateKey = "monitor/state"

// Load reads the daemon's saved state.
func (s Kept) Load(ctx context.Context) (Saved, error) {
	var sv Saved
	_, err := s.Store.Get(ctx, s.Env, stateKey, &sv)
	return sv, err
}

// Save keeps the daemon's state (even as the daemon stops).
func (s Kept) Save(ctx context.Context, sv Saved) error {
	return s.Store.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error { return tx.Put(s.Env, stateKey, sv) })
}

// Event records what the daemon decided or did.
func (s Kept) Event(ctx context.Context, kind, host, detail string) error {
	return s.Store.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error {
		return tx.Record(inventory.Event{Env: s.Env, Host: host, Kind: kind, Detail: detail})
	})
}

// FromTimes makes a measurement of requests that took times, failed of
// them with a 5xx.
func FromTimes(times []time.Duration, failed int) Measure {
	if len(times) == 0 {
		return Measure{}
	}
	t := append([]time.Duration(nil), times...)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	return Measure{Requests: len(t), Failed: failed, P50: t[len(t)/2], P95: t[min(len(t)-1, len(t)*95/100)],
		ErrorRate: float64(failed) / float64(len(t)), Latencies: t}
}

// lbFlap is a state event of a load balancer between ready and serving.
func lbFlap(e inventory.Event, role string) bool {
	return e.Kind == "state" && role == config.RoleLoadBalancers &&
		(e.From == inventory.Serving && e.To == inventory.Ready || e.From == inventory.Ready && e.To == inventory.Serving)
}

// workersLine is each worker with its health ("w1 healthy, w2 unhealthy
// for 2 intervals, w3 booting"), or the counts by state of a status saved
// before health was kept.
func workersLine(l *Status) string {
	if len(l.Health) == 0 {
		var parts []string
		for _, st := range slices.Sorted(maps.Keys(l.Workers)) {
			parts = append(parts, fmt.Sprintf("%d %s", l.Workers[st], st))
		}
		return strings.Join(parts, ", ")
	}
	var parts []string
	for _, w := range slices.Sorted(maps.Keys(l.Health)) {
		parts = append(parts, w+" "+l.Health[w])
	}
	return strings.Join(parts, ", ")
}

// RecentEvents are the last n events of the monitor and of the hosts'
// states, without a load balancer's own ready ⇄ serving comings and goings.
func (s Kept) RecentEvents(ctx context.Context, n int) ([]inventory.Event, error) {
	all, err := s.Store.Events(ctx, s.Env, "", 1000)
	if err != nil {
		return nil, err
	}
	hosts, err := s.Store.Hosts(ctx, s.Env)
	if err != nil {
		return nil, err
	}
	roles := map[string]string{}
	for _, h := range hosts {
		roles[h.Name] = h.Role
	}
	var evs []inventory.Event
	for _, e := range all {
		if lbFlap(e, roles[e.Host]) {
			continue
		}
		if strings.HasPrefix(e.Kind, "monitor") || e.Kind == "state" {
			evs = append(evs, e)
		}
	}
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	return evs, nil
}

// PrintStatus writes what monitor:status shows: the last interval, the
// action in flight and the recent events of the monitor and the hosts'
// states (JSON with asJSON).
func (s Kept) PrintStatus(ctx context.Context, w io.Writer, sla time.Duration, asJSON bool) error {
	sv, err := s.Load(ctx)
	if err != nil {
		return err
	}
	evs, err := s.RecentEvents(ctx, 40)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"state": sv, "events": evs})
	}
	if l := sv.Last; l != nil {
		fmt.Fprintf(w, "last interval %s: %d requests, p50 %v, p95 %v (SLA %v), errors %.2f%%\n", l.Time.Format(time.RFC3339), l.Measure.Requests,
			l.Measure.P50.Round(100*time.Microsecond), l.Measure.P95.Round(100*time.Microsecond), sla, 100*l.Measure.ErrorRate)
		fmt.Fprintf(w, "workers: %s\ndecision: %s\n", workersLine(l), l.Decision)
	} else {
		fmt.Fprintln(w, "the monitor has not run yet (monitor:run "+s.Env+")")
	}
	if a := sv.InFlight; a != nil {
		fmt.Fprintf(w, "in flight: %s of %s since %s\n", a.Kind, a.Host, a.Start.Format(time.RFC3339))
	}
	fmt.Fprintln(w, "recent events:")
	for _, e := range evs {
		what := e.Detail
		if e.Kind == "state" {
			what = fmt.Sprintf("%s → %s %s", e.From, e.To, e.Detail)
		}
		fmt.Fprintf(w, "  %s  %-18s %-6s %s\n", e.Time.UTC().Format("15:04:05.000"), e.Kind, e.Host, what)
	}
	return nil
}
