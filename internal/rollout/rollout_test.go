package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseBatch(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want Size
		bad  bool
	}{
		{"", Size{N: 1}, false}, {"1", Size{N: 1}, false}, {"3", Size{N: 3}, false},
		{"25%", Size{Percent: 25}, false}, {"100%", Size{Percent: 100}, false}, {"all", Size{All: true}, false},
		{"0", Size{}, true}, {"-1", Size{}, true}, {"0%", Size{}, true}, {"101%", Size{}, true}, {"half", Size{}, true}, {"2.5", Size{}, true},
	} {
		got, err := ParseBatch(tc.spec)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseBatch(%q) = %+v, %v", tc.spec, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "BOOTED_BATCH="+tc.spec+": use a count") {
			t.Errorf("ParseBatch(%q): error %q does not say what to use", tc.spec, err)
		}
	}
}

func TestPlan(t *testing.T) {
	hosts := []string{"w1", "w2", "w3", "w4", "w5"}
	for _, tc := range []struct {
		size Size
		want string
	}{
		{Size{N: 1}, "[[w1] [w2] [w3] [w4] [w5]]"},
		{Size{N: 2}, "[[w1 w2] [w3 w4] [w5]]"},
		{Size{N: 9}, "[[w1 w2 w3 w4 w5]]"},
		{Size{Percent: 40}, "[[w1 w2] [w3 w4] [w5]]"},
		{Size{Percent: 10}, "[[w1] [w2] [w3] [w4] [w5]]"}, // at least one
		{Size{All: true}, "[[w1 w2 w3 w4 w5]]"},
	} {
		if got := fmt.Sprint(Plan(hosts, tc.size)); got != tc.want {
			t.Errorf("Plan(%+v) = %s, want %s", tc.size, got, tc.want)
		}
	}
	if got := Plan(nil, Size{All: true}); len(got) != 0 {
		t.Errorf("Plan of no hosts = %v", got)
	}
}

func TestAfter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results map[string]Result
		want    string
	}{
		{"all ok", map[string]Result{"a": {}, "b": {}}, "{RollBack:[] Failed:[] Unreachable:[] Stop:false}"},
		{"one unreachable goes on", map[string]Result{"a": {}, "b": {Status: Unreachable}}, "{RollBack:[] Failed:[] Unreachable:[b] Stop:false}"},
		{"missing counts as unreachable", map[string]Result{"a": {}}, "{RollBack:[] Failed:[] Unreachable:[b] Stop:false}"},
		{"failed after the switch is rolled back", map[string]Result{"a": {Status: Failed, Switched: true}, "b": {}}, "{RollBack:[a] Failed:[a] Unreachable:[] Stop:true}"},
		{"failed before the switch has nothing to roll back", map[string]Result{"a": {Status: Failed}, "b": {Status: Unreachable}}, "{RollBack:[] Failed:[a] Unreachable:[b] Stop:true}"},
	} {
		d := After([]string{"a", "b"}, tc.results)
		got := fmt.Sprintf("{RollBack:%v Failed:%v Unreachable:%v Stop:%v}", d.RollBack, d.Failed, d.Unreachable, d.Stop)
		if strings.ReplaceAll(got, "[]", "[]") != tc.want {
			t.Errorf("%s: After = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// fake records what Run asks of it.
type fake struct {
	calls   []string
	results map[string]Result
}

func (f *fake) Drain(_ context.Context, hosts []string) error {
	f.calls = append(f.calls, fmt.Sprint("drain ", hosts))
	return nil
}

func (f *fake) Change(_ context.Context, title string, hosts []string) (map[string]Result, error) {
	f.calls = append(f.calls, fmt.Sprint("change ", hosts))
	out := map[string]Result{}
	for _, h := range hosts {
		if r, ok := f.results[h]; ok {
			out[h] = r
		} else {
			out[h] = Result{Switched: true}
		}
	}
	return out, nil
}

func (f *fake) Rollback(_ context.Context, hosts []string) error {
	f.calls = append(f.calls, fmt.Sprint("rollback ", hosts))
	return nil
}

func (f *fake) UpdateLB(context.Context) error {
	f.calls = append(f.calls, "lb")
	return nil
}

// Ensure that Run drains, changes and puts back each batch in turn, and
// that a failed batch is rolled back where it was switched, the load
// balancer updated, and nothing after it touched.
func TestRun(t *testing.T) {
	f := &fake{results: map[string]Result{"w3": {Status: Unreachable}}}
	rep, err := Run(context.Background(), "deploy", Plan([]string{"w1", "w2", "w3"}, Size{N: 2}), f)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, "; "); got != "drain [w1 w2]; change [w1 w2]; lb; drain [w3]; change [w3]; lb" {
		t.Errorf("calls: %s", got)
	}
	if fmt.Sprint(rep.Unreachable) != "[w3]" || rep.StoppedAt != 0 {
		t.Errorf("report %+v", rep)
	}

	f = &fake{results: map[string]Result{"w2": {Status: Failed, Switched: true}, "w3": {Status: Failed}}}
	rep, err = Run(context.Background(), "deploy", Plan([]string{"w1", "w2", "w3", "w4"}, Size{N: 3}), f)
	if !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "deploy stopped at batch 1 of 2: failed on w2, w3, rolled back to the previous release on w2") {
		t.Fatalf("err = %v", err)
	}
	if got := strings.Join(f.calls, "; "); got != "drain [w1 w2 w3]; change [w1 w2 w3]; rollback [w2]; lb" {
		t.Errorf("calls: %s", got)
	}
	if rep.StoppedAt != 1 || fmt.Sprint(rep.RolledBack) != "[w2]" {
		t.Errorf("report %+v", rep)
	}
}
