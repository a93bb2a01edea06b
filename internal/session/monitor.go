package session

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"booted/internal/config"
	"booted/internal/deploy"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/lb"
	"booted/internal/loadgen"
	"booted/internal/monitor"
	"booted/internal/remote"
	"booted/internal/service"
)

// MonitorEnv gives the daemon the environment, through the same functions
// the targets use.
type MonitorEnv struct {
	monitor.Kept // Load, Save, Event
	s            *Session
	logs         lb.LogOffsets // how far each load balancer's access log was read
}

// NewMonitorEnv is s as the monitor daemon's environment.
func NewMonitorEnv(s *Session) *MonitorEnv {
	return &MonitorEnv{Kept: monitor.Kept{Store: s.Store, Env: s.Env.Name}, s: s}
}

var _ monitor.Env = (*MonitorEnv)(nil)

// Policy is the monitor section of the env file and the workers' bounds
// and names.
func (m *MonitorEnv) Policy() (config.Monitor, int, int, []string) {
	w := m.s.Env.Roles[config.RoleWorkers]
	return m.s.Env.Monitor, w.Min, w.Max, w.AllNames()
}

// Measure probes the service through the load balancer for d, then reads
// what the load balancers logged meanwhile; the log (all clients) is used
// when it has requests, the probes otherwise.
func (m *MonitorEnv) Measure(ctx context.Context, d time.Duration) (monitor.Measure, error) {
	p, _, _, _ := m.Policy()
	lb, url, err := m.s.Deploys().LBServing(ctx)
	if err != nil {
		// No load balancer serving: nothing to measure, wait an interval.
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return monitor.Measure{}, nil
	}
	st, err := m.s.Deploys().Load(ctx, lb, loadgen.Options{URL: url + p.ProbePath, Duration: d, Rate: p.ProbeRate, Timeout: 5 * time.Second})
	if err != nil {
		return monitor.Measure{}, err
	}
	if lat, failed, ok := m.lbLog(ctx); ok && len(lat) > 0 {
		return monitor.FromTimes(lat, failed), nil
	}
	meas := monitor.Measure{Requests: st.Sent, Failed: st.Failed, P50: st.P50, P95: st.P95, Latencies: st.Latencies}
	if meas.Requests > 0 {
		meas.ErrorRate = float64(meas.Failed) / float64(meas.Requests)
	}
	return meas, nil
}

// lbLog reads the load balancers' access-log lines written since the last
// call: request times and the count of 5xx answers.
func (m *MonitorEnv) lbLog(ctx context.Context) ([]time.Duration, int, bool) {
	lbs, err := m.s.Deploys().LBHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return nil, 0, false
	}
	var mu sync.Mutex
	var all lb.Requests
	// Each log is read from where the last look stopped (the first look
	// only learns where it ends).
	o, step := accessLogJob.Halves(jobs.Op{PerHost: func(h inventory.Host) json.RawMessage {
		b, _ := json.Marshal(accessLogArgs{At: m.logs.At(h.Name)})
		return b
	}}, accessLogArgs{},
		func(ctx context.Context, c hostConn) (accessLog, error) {
			return accessLogHost(m.logs.At(c.Host().Name))(ctx, c)
		},
		func(_ context.Context, h inventory.Host, l accessLog, err error) (string, error) {
			if err != nil {
				return "", err
			}
			m.logs.Moved(h.Name, l.Size)
			mu.Lock()
			all.Times, all.Failed = append(all.Times, l.Requests.Times...), all.Failed+l.Requests.Failed
			mu.Unlock()
			return "", nil
		})
	res := m.s.Each(ctx, lbs, remote.Options{Parallel: m.s.Parallel, Timeout: 10 * time.Second}, o, step)
	for _, r := range res {
		if r.Status != remote.OK {
			return nil, 0, false
		}
	}
	return all.Times, all.Failed, true
}

// accessLogArgs are an access log read's: where the last read stopped.
type accessLogArgs struct {
	At int64 `json:"at"`
}

// accessLog is what a read of a load balancer's access log found: its
// size now and the requests written since the last read.
type accessLog struct {
	Size     int64       `json:"size"`
	Requests lb.Requests `json:"requests"`
}

// accessLogHost reads a load balancer's access log from byte at.
func accessLogHost(at int64) jobs.Host[accessLog] {
	return func(ctx context.Context, c hostConn) (accessLog, error) {
		size, reqs, err := c.AccessLogSince(ctx, at)
		return accessLog{Size: size, Requests: reqs}, err
	}
}

// Workers returns the workers and, for the serving ones, whether their
// health check answers.
func (m *MonitorEnv) Workers(ctx context.Context) ([]monitor.Worker, map[string]bool, error) {
	hosts, err := m.s.Ops().Select(ctx, config.RoleWorkers, nil)
	if err != nil {
		return nil, nil, err
	}
	var ws []monitor.Worker
	var serving []inventory.Host
	for _, h := range hosts {
		ws = append(ws, monitor.Worker{Name: h.Name, State: h.State, Since: h.Since})
		if h.State == inventory.Serving {
			serving = append(serving, h)
		}
	}
	healthy := map[string]bool{}
	rl := m.s.Env.Roles[config.RoleWorkers]
	if rl.Service == "" {
		return ws, healthy, nil
	}
	def, err := m.s.LoadService(rl.Service)
	if err != nil {
		return nil, nil, err
	}
	// at most an interval: a dead worker must not slow the loop
	timeout := min(3*time.Second, max(500*time.Millisecond, m.s.Env.Monitor.Interval.D()))
	errs := m.s.Deploys().Healthy(ctx, def, serving, timeout)
	for i, h := range serving {
		healthy[h.Name] = errs[i] == nil
	}
	return ws, healthy, nil
}

// Do carries out an action with the targets' own steps.
func (m *MonitorEnv) Do(ctx context.Context, a monitor.Action) error {
	s := m.s
	l, err := s.Lock(ctx, fmt.Sprintf("monitor:run %s: %s %s", s.Env.Name, a.Kind, a.Host))
	if err != nil {
		return err
	}
	defer l.Release()
	switch a.Kind {
	case monitor.ScaleUp:
		return s.StartWorker(ctx, a.Host)
	case monitor.CancelDrain:
		if err := s.Advance(ctx, a.Host, inventory.Serving, ""); err != nil {
			return err
		}
		return s.Deploys().UpdateLB(ctx)
	case monitor.ScaleDown:
		h, err := s.Store.Host(ctx, s.Env.Name, a.Host)
		if err != nil {
			return err
		}
		def, err := s.LoadService(s.Env.Roles[config.RoleWorkers].Service)
		if err != nil {
			return err
		}
		if err := s.Deploys().Stop(ctx, def, []inventory.Host{h}); err != nil {
			return err
		}
		return s.Life().Stop(ctx, a.Host)
	case monitor.Replace:
		// Out of the load balancer at once, then boot it again.
		if err := s.Advance(ctx, a.Host, inventory.Failed, "monitor: replaced"); err != nil {
			return err
		}
		if err := s.Deploys().UpdateLB(ctx); err != nil {
			return err
		}
		if _, err := s.Life().PowerOff(ctx, a.Host); err != nil {
			return err
		}
		return s.StartWorker(ctx, a.Host)
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

// Overview is the status page's view: every host with its role's service
// version (read on the host) and whether a load balancer routes to it
// (read on the load balancers), and the recent events.
func (m *MonitorEnv) Overview(ctx context.Context) (monitor.Overview, error) {
	s := m.s
	var o monitor.Overview
	hosts, err := s.Ops().Select(ctx, "", nil)
	if err != nil {
		return o, err
	}
	routed := map[string]bool{} // ADDRESS:PORT the load balancers send to
	for _, ups := range s.Deploys().Routes(ctx) {
		for _, u := range ups {
			routed[u] = true
		}
	}
	versions := map[string]string{}
	port := map[string]int{}
	err = s.EachRoleService(ctx, deploy.HostNames(hosts), func(_ *config.Role, def *service.Def, role []inventory.Host) error {
		var up []inventory.Host
		for _, h := range role {
			port[h.Name] = def.Port
			if h.State.Up() || h.State == inventory.Draining {
				up = append(up, h)
			}
		}
		for name, st := range s.Deploys().States(ctx, def, up) {
			if st.Running {
				versions[name] = st.Version
			}
		}
		return nil
	})
	if err != nil {
		return o, err
	}
	for _, h := range hosts {
		o.Hosts = append(o.Hosts, monitor.PageHost{Name: h.Name, Role: h.Role, State: string(h.State), Version: versions[h.Name],
			Routed: port[h.Name] != 0 && routed[net.JoinHostPort(h.Addr, strconv.Itoa(port[h.Name]))]})
	}
	o.Events, err = m.RecentEvents(ctx, 30)
	return o, err
}

// RunMonitor runs the monitor daemon for envName until SIGINT or SIGTERM
// (monitor:run, and cmd/booted-monitor); SIGHUP reloads the env file.
func RunMonitor(ctx context.Context, o Options, envName string) error {
	return View(ctx, o, envName, func(s *Session) error {
		d := &monitor.Daemon{Env: NewMonitorEnv(s), Name: envName, DryRun: o.DryRun, Log: slog.New(slog.NewTextHandler(o.Err, nil)).With("env", envName)}
		// One daemon of an environment acts, whichever controller runs
		// it: the others (on one PostgreSQL inventory, or a second one
		// here) serve their pages and stand by.
		me := holder()
		d.Resume = s.ResumeOrphan
		d.Acquire = func(ctx context.Context) (<-chan struct{}, func(), error) {
			l, err := s.Store.AcquireLease(ctx, envName, "monitor", me)
			if err != nil {
				return nil, nil, err
			}
			return l.Lost(), l.Release, nil
		}
		cctx, stop := context.WithCancel(ctx)
		capped := make(chan struct{})
		go func() { defer close(capped); s.capConsoles(cctx) }()
		defer func() { stop(); <-capped }()
		return monitor.RunWithSignals(ctx, d, s.Reload, o.Err)
	})
}
