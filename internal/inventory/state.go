package inventory

import "fmt"

// State is where a host is in its lifecycle.
type State string

// The lifecycle: requested → provisioning → booting → booted → ready →
// serving → draining → stopped → terminated, and failed (with the reason)
// when a stage goes wrong or passes its timeout.
const (
	Requested    State = "requested"
	Provisioning State = "provisioning"
	Booting      State = "booting"
	Booted       State = "booted"
	Ready        State = "ready"
	Serving      State = "serving"
	Draining     State = "draining"
	Stopped      State = "stopped"
	Terminated   State = "terminated"
	Failed       State = "failed"
)

// The lifecycle's classes, defined here once (they were written inline
// in a dozen places, some of them differing).

// ComingUp reports whether a host in s is on its way up: asked for, being
// made, booting, or phoned home but not yet checked.
func (s State) ComingUp() bool {
	return s == Requested || s == Provisioning || s == Booting || s == Booted
}

// Up reports whether a host in s has been checked (ping, SSH) and may
// take work: ready or serving.
func (s State) Up() bool { return s == Ready || s == Serving }

// InUse reports whether a host in s holds its machine: neither
// terminated nor failed.
func (s State) InUse() bool { return s != Terminated && s != Failed }

// States lists every state in lifecycle order.
var States = []State{Requested, Provisioning, Booting, Booted, Ready, Serving, Draining, Stopped, Terminated, Failed}

// transitions says which states each state may move to. Staying in the same
// state (a host phoning home again, say) is always allowed.
var transitions = map[State][]State{
	Requested:    {Provisioning, Booting, Failed, Terminated},
	Provisioning: {Booting, Stopped, Failed, Terminated},
	Booting:      {Booted, Stopped, Failed, Terminated},
	Booted:       {Ready, Booting, Stopped, Failed, Terminated},
	Ready:        {Serving, Booted, Booting, Stopped, Failed, Terminated},
	Serving:      {Draining, Booted, Booting, Failed},
	Draining:     {Stopped, Serving, Ready, Failed},
	Stopped:      {Booting, Provisioning, Failed, Terminated},
	Failed:       {Booting, Provisioning, Booted, Ready, Stopped, Terminated},
	Terminated:   {Requested, Provisioning, Booting},
}

// initial lists the states a host may be first recorded in.
var initial = map[State]bool{Requested: true, Provisioning: true, Booting: true, Booted: true, Stopped: true, Failed: true}

// CanMove reports whether the lifecycle allows from → to.
func CanMove(from, to State) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TransitionError is returned when a change is not allowed by the lifecycle.
type TransitionError struct {
	Host     string
	From, To State
}

func (e *TransitionError) Error() string {
	if e.From == "" {
		return fmt.Sprintf("host %s: cannot be recorded as %s first", e.Host, e.To)
	}
	return fmt.Sprintf("host %s: the lifecycle does not allow %s → %s", e.Host, e.From, e.To)
}

// passThrough are the states a multi-step move may pass through on its
// way: administrative steps, never facts about the host (booted means it
// phoned home, so no path passes through booted or booting).
var passThrough = map[State]bool{Draining: true, Stopped: true, Ready: true}

// Path returns the states a host in from goes through to reach to, to
// included: to alone when the lifecycle allows the move directly, else the
// shortest way through draining, stopped or ready (so a serving host drains
// before it stops). It returns nil when from is to, and an error when there
// is no such way.
func Path(host string, from, to State) ([]State, error) {
	if from == to {
		return nil, nil
	}
	if CanMove(from, to) {
		return []State{to}, nil
	}
	prev := map[State]State{from: ""}
	queue := []State{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, next := range transitions[cur] {
			if _, seen := prev[next]; seen {
				continue
			}
			if next == to {
				path := []State{to}
				for s := cur; s != from; s = prev[s] {
					path = append([]State{s}, path...)
				}
				return path, nil
			}
			if passThrough[next] {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return nil, &TransitionError{Host: host, From: from, To: to}
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}
