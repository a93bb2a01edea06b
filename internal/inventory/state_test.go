package inventory

import "testing"

// Ensure each state is in the classes the lifecycle puts it in.
func TestState_Classes(t *testing.T) {
	want := map[State][3]bool{ // ComingUp, Up, InUse
		Requested: {true, false, true}, Provisioning: {true, false, true}, Booting: {true, false, true}, Booted: {true, false, true},
		Ready: {false, true, true}, Serving: {false, true, true}, Draining: {false, false, true}, Stopped: {false, false, true},
		Terminated: {false, false, false}, Failed: {false, false, false},
	}
	for _, s := range States {
		if got := [3]bool{s.ComingUp(), s.Up(), s.InUse()}; got != want[s] {
			t.Errorf("%s: ComingUp, Up, InUse = %v, want %v", s, got, want[s])
		}
	}
}
