package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"booted/internal/config"
	"booted/internal/inventory"
)

// Env is what the daemon needs from an environment; the targets package
// implements it with the same functions as the Mage targets.
type Env interface {
	// Policy returns the env file's policy and the workers' min and max
	// (read again on SIGHUP).
	Policy() (p config.Monitor, min, max int, names []string)
	// Measure measures the service through the load balancer for d.
	Measure(ctx context.Context, d time.Duration) (Measure, error)
	// Workers returns the workers, with whether each serving one is healthy.
	Workers(ctx context.Context) ([]Worker, map[string]bool, error)
	// Do carries an action out.
	Do(ctx context.Context, a Action) error
	// Load and Save keep the daemon's state in the inventory.
	Load(ctx context.Context) (Saved, error)
	Save(ctx context.Context, s Saved) error
	// Event records what the daemon decided or did.
	Event(ctx context.Context, kind, host, detail string) error
	// Overview is every host and the recent events, for the status page.
	Overview(ctx context.Context) (Overview, error)
}

// Saved is the state that survives a restart of the daemon.
type Saved struct {
	LastUp   time.Time `json:"lastUp"`
	LastDown time.Time `json:"lastDown"`
	Breach   int       `json:"breach"`
	Calm     int       `json:"calm"`
	InFlight *Action   `json:"inFlight,omitempty"`
	// Last is the last interval, for monitor:status.
	Last *Status `json:"last,omitempty"`
	// History is the last hour's intervals, for the status page's graph
	// (kept, so that the API server's page and a restarted daemon have it).
	History []Status `json:"history,omitempty"`
}

// Status is one interval as monitor:status shows it.
type Status struct {
	Time    time.Time      `json:"time"`
	Measure Measure        `json:"measure"`
	Workers map[string]int `json:"workers"`
	// Health is each worker's: "healthy", "unhealthy for N intervals"
	// (serving, its health check failing), or its state.
	Health   map[string]string `json:"health"`
	Decision string            `json:"decision"`
	Action   *Action           `json:"action,omitempty"`
}

// Daemon runs the monitor loop.
type Daemon struct {
	Env Env
	// Name is the environment's, for the status page.
	Name   string
	DryRun bool
	Log    *slog.Logger
	// Reload, when it receives, makes the daemon read its policy again.
	Reload <-chan struct{}
	// Acquire, when set, waits until this daemon holds the environment's
	// lease (one daemon acts among several controllers'); lost closes
	// when it no longer does, release lets it go.
	Acquire func(ctx context.Context) (lost <-chan struct{}, release func(), err error)
	// Resume, when set, is called when the daemon starts acting and
	// before every interval: it carries out an operation whose process
	// died (journal), and says whether it did.
	Resume func(ctx context.Context) (bool, error)

	mu        sync.Mutex
	saved     Saved
	active    bool
	unhealthy map[string]int
	metrics   *metrics
	wg        sync.WaitGroup
	// overview is what the status page shows of the hosts (made at most
	// once per 5 s).
	overview *OverviewCache
}

// Run measures, decides and acts every interval until ctx ends. An action
// in flight when the daemon stopped (or died) is carried out again first:
// actions are idempotent, so this finishes it rather than repeating it.
// With Acquire set, the daemon serves its page and /metrics at once but
// acts only while it holds the lease: it waits for it, and when the lease
// is lost it stops acting (the action in flight stays recorded, for the
// next holder to finish) and waits again.
func (d *Daemon) Run(ctx context.Context) error {
	d.unhealthy, d.metrics = map[string]int{}, newMetrics()
	saved, err := d.Env.Load(ctx)
	if err != nil {
		return err
	}
	d.saved = saved
	p, _, _, _ := d.Env.Policy()
	srv, err := d.serve(p.Listen)
	if err != nil {
		return err
	}
	defer srv.Close()
	if d.Acquire == nil {
		d.setActive(true)
		return d.act(ctx)
	}
	for {
		d.Log.Info("standing by: waiting for the lease (another controller's daemon acts)")
		lost, release, err := d.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		d.Log.Info("holding the lease: acting")
		actx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				d.Log.Error("lost the lease: no longer acting")
				stop()
			case <-actx.Done():
			}
		}()
		d.setActive(true)
		err = d.act(actx)
		stop()
		d.setActive(false)
		release()
		if ctx.Err() != nil || err != nil {
			return err
		}
	}
}

// setActive says whether this daemon acts (holds the lease), for
// /status.json and /metrics.
func (d *Daemon) setActive(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active = on
	d.metrics.setActive(on)
}

// act is the loop of a daemon that acts: the state as the last holder
// left it, the action it had in flight, then an interval after another
// until ctx ends.
func (d *Daemon) act(ctx context.Context) error {
	saved, err := d.Env.Load(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.saved = saved
	d.mu.Unlock()
	p, min, max, names := d.Env.Policy()
	if a := saved.InFlight; a != nil {
		d.Log.Info("reconciling the action in flight when the daemon stopped", "kind", a.Kind, "host", a.Host)
		d.Env.Event(ctx, "monitor-reconcile", a.Host, fmt.Sprintf("%s started %s before a restart: carrying it out again", a.Kind, a.Start.Format(time.RFC3339)))
		d.mu.Lock()
		d.start(ctx, *a)
		d.mu.Unlock()
	}
	defer d.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.Reload:
			p, min, max, names = d.Env.Policy()
			d.Log.Info("policy reloaded", "min", min, "max", max, "sla", p.SLA.P95.D())
			d.Env.Event(ctx, "monitor-reload", "", fmt.Sprintf("policy reloaded: min %d, max %d, SLA p95 %v", min, max, p.SLA.P95.D()))
		default:
		}
		if d.Resume != nil {
			if resumed, err := d.Resume(ctx); err != nil && ctx.Err() == nil {
				d.Log.Error("resuming an operation whose process died", "err", err)
				d.Env.Event(ctx, "monitor-error", "", err.Error())
			} else if resumed {
				d.Log.Info("resumed an operation whose process died")
			}
		}
		if err := d.interval(ctx, p, min, max, names); err != nil && ctx.Err() == nil {
			d.Log.Error("interval failed", "err", err)
			d.Env.Event(ctx, "monitor-error", "", err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(p.Interval.D()):
			}
		}
	}
}

func (d *Daemon) interval(ctx context.Context, p config.Monitor, min, max int, names []string) (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("panic: %v", x) // one bad interval must not kill the daemon
		}
	}()
	m, err := d.Env.Measure(ctx, p.Interval.D())
	if err != nil {
		return err
	}
	workers, healthy, err := d.Env.Workers(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	counts := map[string]int{}
	health := map[string]string{}
	for i, w := range workers {
		counts[string(w.State)]++
		if w.State == inventory.Serving && !healthy[w.Name] {
			d.unhealthy[w.Name]++
		} else {
			delete(d.unhealthy, w.Name)
		}
		workers[i].UnhealthyFor = d.unhealthy[w.Name]
		switch {
		case w.State != inventory.Serving:
			health[w.Name] = string(w.State)
		case healthy[w.Name]:
			health[w.Name] = "healthy"
		default:
			health[w.Name] = fmt.Sprintf("unhealthy for %d intervals", d.unhealthy[w.Name])
		}
	}
	st := State{Now: time.Now(), Workers: workers, Names: names, LastUp: d.saved.LastUp, LastDown: d.saved.LastDown,
		Breach: d.saved.Breach, Calm: d.saved.Calm, InFlight: d.saved.InFlight}
	dec := Decide(p, min, max, st, m)
	d.saved.Breach, d.saved.Calm = dec.Breach, dec.Calm
	prev := ""
	if d.saved.Last != nil {
		prev = d.saved.Last.Decision
	}
	d.saved.Last = &Status{Time: st.Now, Measure: m, Workers: counts, Health: health, Decision: dec.Why, Action: dec.Action}
	d.metrics.interval(m, workers, healthy)
	d.saved.History = append(d.saved.History, *d.saved.Last)
	for len(d.saved.History) > 0 && st.Now.Sub(d.saved.History[0].Time) > history {
		d.saved.History = d.saved.History[1:]
	}
	d.Log.Info("interval", "requests", m.Requests, "p95", m.P95, "errors", m.ErrorRate, "serving", counts[string(inventory.Serving)], "decision", dec.Why)
	if dec.Action != nil || (dec.Why != prev && !strings.HasPrefix(dec.Why, "p95")) {
		d.Env.Event(ctx, "monitor-decision", "", dec.Why)
	}
	if dec.Action != nil {
		a := *dec.Action
		a.Start = st.Now
		if d.DryRun {
			d.Log.Info("dry run: would act", "kind", a.Kind, "host", a.Host, "reason", a.Reason)
			d.Env.Event(ctx, "monitor-dry-run", a.Host, "would "+a.Kind+": "+a.Reason)
			d.finished(a, st.Now) // cooldowns apply as if it had been done
		} else {
			d.saved.InFlight = &a
			if err := d.Env.Save(ctx, d.saved); err != nil {
				return err
			}
			d.start(ctx, a)
		}
	}
	return d.Env.Save(ctx, d.saved)
}

// start carries an action out in the background; d.mu may be held.
func (d *Daemon) start(ctx context.Context, a Action) {
	d.saved.InFlight = &a
	d.metrics.setInFlight(true)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.Env.Event(ctx, "monitor-action", a.Host, a.Kind+" started: "+a.Reason)
		err := d.Env.Do(ctx, a)
		if ctx.Err() != nil {
			// Abandoned on shutdown or with the lease: InFlight stays
			// saved and the next daemon to act carries it out again.
			d.Env.Event(context.WithoutCancel(ctx), "monitor-action", a.Host, a.Kind+" abandoned (the daemon stopped, or lost its lease); it resumes when a daemon acts again")
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if err != nil {
			d.Log.Error("action failed", "kind", a.Kind, "host", a.Host, "err", err)
			d.Env.Event(ctx, "monitor-action", a.Host, fmt.Sprintf("%s failed after %v: %v", a.Kind, time.Since(a.Start).Round(time.Millisecond), err))
		} else {
			d.Env.Event(ctx, "monitor-action", a.Host, fmt.Sprintf("%s done in %v", a.Kind, time.Since(a.Start).Round(time.Millisecond)))
		}
		d.metrics.action(a.Kind)
		d.metrics.setInFlight(false)
		d.finished(a, time.Now())
		d.saved.InFlight = nil
		d.Env.Save(ctx, d.saved)
	}()
}

func (d *Daemon) finished(a Action, t time.Time) {
	switch a.Kind {
	case ScaleUp, CancelDrain, Replace:
		d.saved.LastUp = t
	case ScaleDown:
		d.saved.LastDown = t
	}
}

// serve starts /metrics (Prometheus text format) and a status page.
func (d *Daemon) serve(addr string) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: listen on %s (monitor.listen in the env file): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.handler())
	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /status.json", d.statusJSON)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, Addr: l.Addr().String()}
	go srv.Serve(l)
	return srv, nil
}
