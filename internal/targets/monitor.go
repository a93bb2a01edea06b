package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"booted/internal/config"
	"booted/internal/fanout"
	"booted/internal/inventory"
	"booted/internal/loadgen"
	"booted/internal/monitor"
	"booted/internal/provider"
	"booted/internal/remote"
)

// MonitorRun runs the monitor daemon for ENV until SIGINT or SIGTERM:
// every interval it measures the service through the load balancer (its
// own probes and the load balancer's access log) and each worker's health,
// and scales the workers between min and max to hold the SLA of the env
// file's monitor section, replacing workers that stay unhealthy. SIGHUP
// reloads the env file (and its provider). BOOTED_DRY_RUN=1 only logs what
// it would do.
func (r *Runner) MonitorRun(ctx context.Context, envName string) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }() // ends the reload goroutine
	reload := make(chan struct{}, 1)
	return r.withEnv(ctx, envName, func(s *session) error {
		// The reload swaps the session's env and provider only between the
		// daemon's calls (an action in flight finishes first).
		le := monitor.NewLocked(&monitorEnv{s: s})
		go func() {
			for range hup {
				if err := le.Swap(func() error { return s.reload(ctx) }); err != nil {
					fmt.Fprintf(r.Err, "SIGHUP: %v (keeping the old policy)\n", err)
					continue
				}
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}()
		d := &monitor.Daemon{Env: le, DryRun: r.DryRun, Reload: reload,
			Log: slog.New(slog.NewTextHandler(r.Err, nil)).With("env", envName)}
		return d.Run(ctx)
	})
}

// monitorEnv gives the daemon the environment, through the same functions
// the targets use.
type monitorEnv struct {
	s     *session
	mu    sync.Mutex
	logAt map[string]int64 // load balancer access log offsets
}

var _ monitor.Env = (*monitorEnv)(nil)

func (m *monitorEnv) Policy() (config.Monitor, int, int, []string) {
	w := m.s.env.Roles[config.RoleWorkers]
	return m.s.env.Monitor, w.Min, w.Max, w.AllNames()
}

// Measure probes the service through the load balancer for d, then reads
// what the load balancers logged meanwhile; the log (all clients) is used
// when it has requests, the probes otherwise.
func (m *monitorEnv) Measure(ctx context.Context, d time.Duration) (monitor.Measure, error) {
	p, _, _, _ := m.Policy()
	url, err := m.s.lbURL(ctx)
	if err != nil {
		// No load balancer serving: nothing to measure, wait an interval.
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return monitor.Measure{}, nil
	}
	st, err := loadgen.Run(ctx, loadgen.Options{URL: url + p.ProbePath, Duration: d, Rate: p.ProbeRate, Timeout: 5 * time.Second})
	if err != nil {
		return monitor.Measure{}, err
	}
	meas := monitor.Measure{Requests: st.Sent, Failed: st.Failed, P50: st.P50, P95: st.P95}
	if lat, failed, ok := m.lbLog(ctx); ok && len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		meas = monitor.Measure{Requests: len(lat), Failed: failed, P50: lat[len(lat)/2], P95: lat[min(len(lat)-1, len(lat)*95/100)]}
	}
	if meas.Requests > 0 {
		meas.ErrorRate = float64(meas.Failed) / float64(meas.Requests)
	}
	return meas, nil
}

// lbLog reads the load balancers' access-log lines written since the last
// call: request times and the count of 5xx answers.
func (m *monitorEnv) lbLog(ctx context.Context) ([]time.Duration, int, bool) {
	lbs, err := m.s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return nil, 0, false
	}
	m.mu.Lock()
	if m.logAt == nil {
		m.logAt = map[string]int64{}
	}
	m.mu.Unlock()
	var lat []time.Duration
	failed := 0
	res := m.s.io.Each(ctx, lbs, remote.Options{Parallel: m.s.r.Parallel, Timeout: 10 * time.Second}, func(ctx context.Context, c hostConn) error {
		name := c.Host().Name
		m.mu.Lock()
		at, seen := m.logAt[name]
		m.mu.Unlock()
		if !seen {
			at = -1
		}
		size, reqs, err := c.AccessLogSince(ctx, at)
		if err != nil {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.logAt[name] = size
		lat = append(lat, reqs.Times...)
		failed += reqs.Failed
		return nil
	})
	for _, r := range res {
		if r.Status != remote.OK {
			return nil, 0, false
		}
	}
	return lat, failed, true
}

// Workers returns the workers and, for the serving ones, whether their
// health check answers.
func (m *monitorEnv) Workers(ctx context.Context) ([]monitor.Worker, map[string]bool, error) {
	hosts, err := m.s.selectHosts(ctx, config.RoleWorkers, nil)
	if err != nil {
		return nil, nil, err
	}
	all, err := m.s.store.Hosts(ctx, m.s.env.Name)
	if err != nil {
		return nil, nil, err
	}
	var ws []monitor.Worker
	for _, h := range all {
		if h.Role == config.RoleWorkers {
			ws = append(ws, monitor.Worker{Name: h.Name, State: h.State, Since: h.Since})
		}
	}
	healthy := map[string]bool{}
	rl := m.s.env.Roles[config.RoleWorkers]
	if rl.Service == "" {
		return ws, healthy, nil
	}
	def, err := m.s.loadService(rl.Service)
	if err != nil {
		return nil, nil, err
	}
	var serving []inventory.Host
	for _, h := range hosts {
		if h.State == inventory.Serving {
			serving = append(serving, h)
		}
	}
	// at most an interval: a dead worker must not slow the loop
	timeout := min(3*time.Second, max(500*time.Millisecond, m.s.env.Monitor.Interval.D()))
	ok := fanout.Map(ctx, serving, m.s.r.Parallel, func(ctx context.Context, h inventory.Host) bool {
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := m.s.io.Get(hctx, def, h, def.Health.Path)
		return err == nil
	})
	for i, h := range serving {
		healthy[h.Name] = ok[i]
	}
	return ws, healthy, nil
}

// Do carries out an action with the targets' own steps.
func (m *monitorEnv) Do(ctx context.Context, a monitor.Action) error {
	s := m.s
	switch a.Kind {
	case monitor.ScaleUp:
		return s.startWorker(ctx, a.Host)
	case monitor.CancelDrain:
		if err := s.advance(ctx, a.Host, inventory.Serving, ""); err != nil {
			return err
		}
		return s.updateLB(ctx)
	case monitor.ScaleDown:
		h, err := s.store.Host(ctx, s.env.Name, a.Host)
		if err != nil {
			return err
		}
		def, err := s.loadService(s.env.Roles[config.RoleWorkers].Service)
		if err != nil {
			return err
		}
		if err := s.stopService(ctx, def, []inventory.Host{h}); err != nil {
			return err
		}
		return s.stop(ctx, a.Host)
	case monitor.Replace:
		// Out of the load balancer at once, then boot it again.
		if err := s.advance(ctx, a.Host, inventory.Failed, "monitor: replaced"); err != nil {
			return err
		}
		if err := s.updateLB(ctx); err != nil {
			return err
		}
		if pw, ok := s.prov.(provider.Power); ok {
			if err := pw.Stop(ctx, a.Host); err != nil {
				return err
			}
		}
		return s.startWorker(ctx, a.Host)
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

func (m *monitorEnv) Load(ctx context.Context) (monitor.Saved, error) {
	var sv monitor.Saved
	_, err := m.s.store.Get(ctx, m.s.env.Name, "monitor/state", &sv)
	return sv, err
}

func (m *monitorEnv) Save(ctx context.Context, sv monitor.Saved) error {
	return m.s.store.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error { return tx.Put(m.s.env.Name, "monitor/state", sv) })
}

func (m *monitorEnv) Event(ctx context.Context, kind, host, detail string) error {
	return m.s.store.Update(context.WithoutCancel(ctx), func(tx *inventory.Tx) error {
		return tx.Record(inventory.Event{Env: m.s.env.Name, Host: host, Kind: kind, Detail: detail})
	})
}

// MonitorStatus prints the monitor's last measurements and decision, and
// the recent events of the environment.
func (r *Runner) MonitorStatus(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		me := &monitorEnv{s: s}
		sv, err := me.Load(ctx)
		if err != nil {
			return err
		}
		all, err := s.store.Events(ctx, s.env.Name, "", 1000)
		if err != nil {
			return err
		}
		var evs []inventory.Event
		for _, e := range all {
			if strings.HasPrefix(e.Kind, "monitor") || e.Kind == "state" {
				evs = append(evs, e)
			}
		}
		if len(evs) > 40 {
			evs = evs[len(evs)-40:]
		}
		if r.JSON {
			return json.NewEncoder(r.Out).Encode(map[string]any{"state": sv, "events": evs})
		}
		if l := sv.Last; l != nil {
			fmt.Fprintf(r.Out, "last interval %s: %d requests, p50 %v, p95 %v (SLA %v), errors %.2f%%\n", l.Time.Format(time.RFC3339), l.Measure.Requests,
				l.Measure.P50.Round(100*time.Microsecond), l.Measure.P95.Round(100*time.Microsecond), s.env.Monitor.SLA.P95.D(), 100*l.Measure.ErrorRate)
			fmt.Fprintf(r.Out, "workers: %v\ndecision: %s\n", l.Workers, l.Decision)
		} else {
			fmt.Fprintln(r.Out, "the monitor has not run yet (monitor:run "+envName+")")
		}
		if a := sv.InFlight; a != nil {
			fmt.Fprintf(r.Out, "in flight: %s of %s since %s\n", a.Kind, a.Host, a.Start.Format(time.RFC3339))
		}
		fmt.Fprintln(r.Out, "recent events:")
		for _, e := range evs {
			what := e.Detail
			if e.Kind == "state" {
				what = fmt.Sprintf("%s → %s %s", e.From, e.To, e.Detail)
			}
			fmt.Fprintf(r.Out, "  %s  %-18s %-6s %s\n", e.Time.UTC().Format("15:04:05.000"), e.Kind, e.Host, what)
		}
		return nil
	})
}
