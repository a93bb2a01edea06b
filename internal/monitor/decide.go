// Package monitor keeps an environment inside its SLA: it measures the
// service through the load balancer and each worker's health, decides (a
// pure function of the measurements and the state, below) whether to add,
// remove or replace a worker, and carries the action out with the same
// functions the Mage targets use.
package monitor

import (
	"fmt"
	"sort"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
)

// Measure is one interval's measurements through the load balancer.
type Measure struct {
	Requests  int
	Failed    int
	P50, P95  time.Duration
	ErrorRate float64
	// Latencies are the requests' times, when known (for /metrics).
	Latencies []time.Duration `json:"-"`
}

// Worker is one worker as the decision sees it.
type Worker struct {
	Name  string
	State inventory.State
	// Since is when it entered its state (serving: when it was put in).
	Since time.Time
	// UnhealthyFor counts the intervals in a row its health check failed.
	UnhealthyFor int
}

// Action is what the monitor does.
type Action struct {
	Kind   string    `json:"kind"`
	Host   string    `json:"host"`
	Reason string    `json:"reason"`
	Start  time.Time `json:"start"`
}

// Action kinds.
const (
	ScaleUp     = "scale-up"
	ScaleDown   = "scale-down"
	Replace     = "replace"
	CancelDrain = "cancel-drain"
)

// State is what the decision remembers between intervals.
type State struct {
	Now     time.Time
	Workers []Worker
	// Names are every worker name the role may have (up to max).
	Names []string
	// LastUp and LastDown are when the last scaling actions finished.
	LastUp, LastDown time.Time
	// Breach and Calm count intervals in a row over the SLA / under the
	// low-water mark.
	Breach, Calm int
	// InFlight is the action under way, if any.
	InFlight *Action
}

// Decision is the outcome of one interval.
type Decision struct {
	Action *Action
	Breach int
	Calm   int
	// Why explains the decision (also when nothing is done).
	Why string
}

// Decide is the scaling policy: given the policy, the workers role's bounds,
// the state and this interval's measurements, what to do. It never goes
// outside min..max, never starts an action while one is in flight, replaces
// a worker that stays unhealthy, prefers putting a draining worker back to
// starting another, and ignores measurements while a worker warms up.
func Decide(p config.Monitor, min, max int, st State, m Measure) Decision {
	d := Decision{Breach: st.Breach, Calm: st.Calm}
	if st.InFlight != nil {
		d.Why = fmt.Sprintf("waiting for %s of %s (started %v ago)", st.InFlight.Kind, st.InFlight.Host, st.Now.Sub(st.InFlight.Start).Round(time.Second))
		return d
	}
	var serving, draining, stopped []Worker
	used := map[string]bool{}
	warming := false
	for _, w := range st.Workers {
		if w.State != inventory.Terminated {
			used[w.Name] = true
		}
		switch w.State {
		case inventory.Serving:
			serving = append(serving, w)
			if st.Now.Sub(w.Since) < p.Warmup.D() {
				warming = true
			}
		case inventory.Draining:
			draining = append(draining, w)
		case inventory.Stopped, inventory.Failed, inventory.Ready, inventory.Booted:
			stopped = append(stopped, w)
		}
	}
	// A serving worker that stays unhealthy is replaced first.
	for _, w := range serving {
		if w.UnhealthyFor >= p.UnhealthyIntervals {
			d.Action = &Action{Kind: Replace, Host: w.Name, Reason: fmt.Sprintf("health check failed %d intervals in a row", w.UnhealthyFor)}
			d.Why = d.Action.Reason
			return d
		}
	}
	up := func(reason string) Decision {
		if len(draining) > 0 {
			d.Action = &Action{Kind: CancelDrain, Host: draining[0].Name, Reason: reason + "; putting a draining worker back"}
		} else if h := pick(stopped, st.Names, used); h != "" {
			d.Action = &Action{Kind: ScaleUp, Host: h, Reason: reason}
		} else {
			d.Why = reason + ", but no worker name is free"
			return d
		}
		d.Breach, d.Calm = 0, 0
		d.Why = d.Action.Reason
		return d
	}
	n := len(serving)
	if n < min {
		return up(fmt.Sprintf("%d workers serving, below min %d", n, min))
	}
	if warming {
		d.Why = "a new worker is warming up; this interval does not count"
		return d
	}
	sla := p.SLA.P95.D()
	breach := m.Requests > 0 && (m.P95 > sla || m.ErrorRate > p.SLA.ErrorRate)
	calm := m.Requests > 0 && m.P95 < time.Duration(float64(sla)*p.LowWater) && m.ErrorRate <= p.SLA.ErrorRate
	switch {
	case breach:
		d.Breach, d.Calm = d.Breach+1, 0
	case calm:
		d.Breach, d.Calm = 0, d.Calm+1
	default:
		d.Breach, d.Calm = 0, 0
	}
	measured := fmt.Sprintf("p95 %v (SLA %v), errors %.1f%%", m.P95.Round(100*time.Microsecond), sla, 100*m.ErrorRate)
	switch {
	case d.Breach >= p.BreachIntervals && n >= max:
		d.Why = measured + fmt.Sprintf(": over the SLA, but already at max %d", max)
	case d.Breach >= p.BreachIntervals && st.Now.Sub(st.LastUp) < p.CooldownUp.D():
		d.Why = measured + fmt.Sprintf(": over the SLA, cooling down after the last scale-up (%v left)", (p.CooldownUp.D()-st.Now.Sub(st.LastUp)).Round(time.Second))
	case d.Breach >= p.BreachIntervals:
		return up(measured + fmt.Sprintf(": over the SLA for %d intervals", d.Breach))
	case d.Calm >= p.CalmIntervals && n <= min:
		d.Why = measured + fmt.Sprintf(": well under the SLA, already at min %d", min)
	case d.Calm >= p.CalmIntervals && (st.Now.Sub(st.LastDown) < p.CooldownDown.D() || st.Now.Sub(st.LastUp) < p.CooldownDown.D()):
		d.Why = measured + ": well under the SLA, cooling down"
	case d.Calm >= p.CalmIntervals:
		newest := serving[0]
		for _, w := range serving[1:] {
			if w.Since.After(newest.Since) || (w.Since.Equal(newest.Since) && w.Name > newest.Name) {
				newest = w
			}
		}
		d.Action = &Action{Kind: ScaleDown, Host: newest.Name, Reason: measured + fmt.Sprintf(": under %.0f%% of the SLA for %d intervals", 100*p.LowWater, d.Calm)}
		d.Breach, d.Calm = 0, 0
		d.Why = d.Action.Reason
	default:
		d.Why = measured + fmt.Sprintf(", %d workers serving", n)
	}
	return d
}

// pick chooses the worker to start: a stopped one (first by name), else a
// name of the role nobody has yet.
func pick(stopped []Worker, names []string, used map[string]bool) string {
	sort.Slice(stopped, func(i, j int) bool { return stopped[i].Name < stopped[j].Name })
	if len(stopped) > 0 {
		return stopped[0].Name
	}
	for _, n := range names {
		if !used[n] {
			return n
		}
	}
	return ""
}
