package monitor

import (
	"context"
	"io"
	"log/slog"
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

// Ensure one action at a time: while a scale-up is in flight, breaches go
// on but no second action starts; when it is done, the next one may.
func TestDaemon_OneActionInFlight(t *testing.T) {
	f := newFake()
	stop := run(t, f, false, nil)
	time.Sleep(200 * time.Millisecond) // ten intervals, all over the SLA
	f.mu.Lock()
	inflight := f.saved.InFlight
	n := len(f.done)
	f.mu.Unlock()
	if inflight == nil || inflight.Host != "w2" || n != 0 {
		t.Fatalf("in flight %+v, done %d", inflight, n)
	}
	f.release <- struct{}{} // w2 comes up
	time.Sleep(100 * time.Millisecond)
	f.mu.Lock()
	if len(f.done) != 1 || f.saved.InFlight == nil || f.saved.InFlight.Host != "w3" {
		t.Errorf("after w2: done %v, in flight %+v", f.done, f.saved.InFlight)
	}
	f.mu.Unlock()
	stop() // abandons w3's scale-up: it stays recorded for the next start
	if f.saved.InFlight == nil || f.saved.InFlight.Host != "w3" {
		t.Errorf("the abandoned action was not kept: %+v", f.saved.InFlight)
	}
	// A new daemon carries it out first.
	go func() { f.release <- struct{}{} }()
	stop = run(t, f, false, nil)
	time.Sleep(100 * time.Millisecond)
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.done) < 2 || f.done[1].Host != "w3" {
		t.Errorf("after a restart: done %v", f.done)
	}
}

// Ensure a dry run acts on nothing, and SIGHUP's reload takes a new policy.
func TestDaemon_DryRunAndReload(t *testing.T) {
	f := newFake()
	f.max = 1
	reload := make(chan struct{}, 1)
	stop := run(t, f, true, reload)
	time.Sleep(100 * time.Millisecond)
	f.mu.Lock()
	f.max = 2
	f.mu.Unlock()
	reload <- struct{}{}
	time.Sleep(100 * time.Millisecond)
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.done) != 0 || f.saved.InFlight != nil {
		t.Errorf("a dry run acted: %v %+v", f.done, f.saved.InFlight)
	}
	var wouldBefore, reloaded, would bool
	for _, e := range f.events {
		switch {
		case len(e) > 15 && e[:15] == "monitor-dry-run" && !reloaded:
			wouldBefore = true
		case len(e) > 14 && e[:14] == "monitor-reload":
			reloaded = true
		case len(e) > 15 && e[:15] == "monitor-dry-run":
			would = true
		}
	}
	if wouldBefore || !reloaded || !would {
		t.Errorf("at max 1 nothing to do, after reload (max 2) a dry-run scale-up: %v", f.events)
	}
}
