package monitor

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
)

// fakeEnv is an environment of workers in memory; its measurements are
// always over the SLA, and Do blocks until released.
type fakeEnv struct {
	mu      sync.Mutex
	policy  config.Monitor
	max     int
	workers []Worker
	saved   Saved
	done    []Action
	events  []string
	release chan struct{}
	// overviews counts the Overviews made (each reaches every host).
	overviews int
}

func (f *fakeEnv) Policy() (config.Monitor, int, int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policy, 1, f.max, []string{"w1", "w2", "w3", "w4"}
}
func (f *fakeEnv) Measure(ctx context.Context, d time.Duration) (Measure, error) {
	time.Sleep(d)
	return Measure{Requests: 100, P95: time.Second}, nil
}
func (f *fakeEnv) Workers(ctx context.Context) ([]Worker, map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := map[string]bool{}
	for _, w := range f.workers {
		h[w.Name] = true
	}
	return append([]Worker(nil), f.workers...), h, nil
}
func (f *fakeEnv) Do(ctx context.Context, a Action) error {
	select {
	case <-f.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = append(f.done, a)
	f.workers = append(f.workers, Worker{Name: a.Host, State: inventory.Serving, Since: time.Now().Add(-time.Hour)})
	return nil
}
func (f *fakeEnv) Load(ctx context.Context) (Saved, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saved, nil
}
func (f *fakeEnv) Save(ctx context.Context, s Saved) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saved = s
	return nil
}
func (f *fakeEnv) Event(ctx context.Context, kind, host, detail string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, kind+" "+host+" "+detail)
	return nil
}

func (f *fakeEnv) Overview(ctx context.Context) (Overview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.overviews++
	var o Overview
	o.Hosts = append(o.Hosts, PageHost{Name: "lb1", Role: "loadbalancers", State: "serving"})
	for _, w := range f.workers {
		o.Hosts = append(o.Hosts, PageHost{Name: w.Name, Role: "workers", State: string(w.State), Version: "v1", Routed: w.State == inventory.Serving})
	}
	for _, e := range f.events {
		o.Events = append(o.Events, inventory.Event{Time: time.Now(), Kind: "monitor", Detail: e})
	}
	return o, nil
}

func newFake() *fakeEnv {
	p := config.Monitor{Interval: config.Duration(20 * time.Millisecond), SLA: config.SLA{P95: config.Duration(100 * time.Millisecond), ErrorRate: 0.01},
		BreachIntervals: 1, CalmIntervals: 1, LowWater: 0.5, UnhealthyIntervals: 1, Listen: "127.0.0.1:0"}
	return &fakeEnv{policy: p, max: 4, workers: []Worker{{Name: "w1", State: inventory.Serving, Since: time.Now().Add(-time.Hour)}}, release: make(chan struct{})}
}

func run(t *testing.T, f *fakeEnv, dry bool, reload chan struct{}) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{Env: f, DryRun: dry, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Reload: reload}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// eventually waits up to 10 s (hundreds of intervals) for ok, under f's lock.
func eventually(t *testing.T, f *fakeEnv, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		f.mu.Lock()
		done := ok()
		f.mu.Unlock()
		if done {
			return
		}
		if time.Since(start) > 10*time.Second {
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("%s: not within 10s; done %v, in flight %+v, events %v", what, f.done, f.saved.InFlight, f.events)
		}
	}
}

// Ensure one action at a time: while a scale-up is in flight, breaches go
// on but no second action starts; when it is done, the next one may.
func TestDaemon_OneActionInFlight(t *testing.T) {
	f := newFake()
	stop := run(t, f, false, nil)
	eventually(t, f, "a scale-up of w2 in flight", func() bool { return f.saved.InFlight != nil })
	time.Sleep(200 * time.Millisecond) // ten more intervals, all over the SLA
	f.mu.Lock()
	inflight := f.saved.InFlight
	n := len(f.done)
	f.mu.Unlock()
	if inflight == nil || inflight.Host != "w2" || n != 0 {
		t.Fatalf("in flight %+v, done %d", inflight, n)
	}
	f.release <- struct{}{} // w2 comes up
	eventually(t, f, "w2 done, then w3 in flight", func() bool {
		return len(f.done) == 1 && f.saved.InFlight != nil && f.saved.InFlight.Host == "w3"
	})
	stop() // abandons w3's scale-up: it stays recorded for the next start
	if f.saved.InFlight == nil || f.saved.InFlight.Host != "w3" {
		t.Errorf("the abandoned action was not kept: %+v", f.saved.InFlight)
	}
	if len(f.done) != 1 {
		t.Errorf("done after the stop: %v, want w2 only", f.done)
	}
	// A new daemon carries it out first.
	go func() { f.release <- struct{}{} }()
	stop = run(t, f, false, nil)
	eventually(t, f, "a second action done", func() bool { return len(f.done) >= 2 })
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done[1].Host != "w3" {
		t.Errorf("after a restart: done %v, want the abandoned w3 next", f.done)
	}
}

// Ensure a dry run acts on nothing, and SIGHUP's reload takes a new policy.
func TestDaemon_DryRunAndReload(t *testing.T) {
	f := newFake()
	f.max = 1
	reload := make(chan struct{}, 1)
	stop := run(t, f, true, reload)
	time.Sleep(100 * time.Millisecond) // five intervals at max 1: nothing to do
	f.mu.Lock()
	f.max = 2
	f.mu.Unlock()
	reload <- struct{}{}
	has := func(prefix string) bool {
		for _, e := range f.events {
			if strings.HasPrefix(e, prefix) {
				return true
			}
		}
		return false
	}
	eventually(t, f, "a dry-run scale-up after the reload", func() bool { return has("monitor-dry-run") })
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.done) != 0 || f.saved.InFlight != nil {
		t.Errorf("a dry run acted: %v %+v", f.done, f.saved.InFlight)
	}
	var wouldBefore, reloaded bool
	for _, e := range f.events {
		switch {
		case strings.HasPrefix(e, "monitor-reload"):
			reloaded = true
		case strings.HasPrefix(e, "monitor-dry-run") && !reloaded:
			wouldBefore = true
		}
	}
	if wouldBefore || !reloaded {
		t.Errorf("at max 1 nothing to do, after reload (max 2) a dry-run scale-up: %v", f.events)
	}
}

// Ensure that of two daemons (two controllers') one acts at a time: the
// other stands by; when the active one loses its lease, it stops acting
// (its action in flight abandoned, still recorded) and the other takes
// the lease, carries that action out, and goes on; the action is done
// once.
func TestDaemon_OneActsAmongSeveral(t *testing.T) {
	f := newFake()
	token := make(chan struct{}, 1) // the lease, free
	token <- struct{}{}
	var mu sync.Mutex
	var holders []string
	lose := map[string]chan struct{}{}
	start := func(name string) (*Daemon, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		d := &Daemon{Env: f, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		d.Acquire = func(ctx context.Context) (<-chan struct{}, func(), error) {
			select {
			case <-token:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			holders = append(holders, name)
			lost := make(chan struct{})
			lose[name] = lost
			return lost, func() { token <- struct{}{} }, nil
		}
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	a, stopA := start("a")
	defer stopA()
	b, stopB := start("b")
	defer stopB()
	eventually(t, f, "a scale-up of w2 in flight", func() bool { return f.saved.InFlight != nil })
	mu.Lock()
	first := holders[0]
	mu.Unlock()
	active := func(d *Daemon) bool { d.mu.Lock(); defer d.mu.Unlock(); return d.active }
	if n := len(holders); n != 1 || active(a) == active(b) {
		t.Fatalf("holders %v, a active %v, b active %v: want one", holders, active(a), active(b))
	}
	close(lose[first]) // its connection to the database ended, say
	eventually(t, f, "the other daemon reconciling w2", func() bool {
		for _, e := range f.events {
			if strings.HasPrefix(e, "monitor-reconcile w2") {
				return true
			}
		}
		return false
	})
	mu.Lock()
	if len(holders) != 2 || holders[1] == first {
		t.Errorf("holders %v: want the other one second", holders)
	}
	mu.Unlock()
	f.release <- struct{}{} // w2 comes up
	eventually(t, f, "w2 done", func() bool { return len(f.done) == 1 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done[0].Host != "w2" {
		t.Errorf("done %v, want w2 once", f.done)
	}
}
