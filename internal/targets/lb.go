package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/lb"
	"booted/internal/loadgen"
	"booted/internal/remote"
)

// LBPort is the port the load balancers listen on.
const LBPort = 80

// lbHosts returns the load balancer hosts that are up.
func (s *session) lbHosts(ctx context.Context) ([]inventory.Host, error) {
	if s.env.Roles[config.RoleLoadBalancers] == nil {
		return nil, nil
	}
	return s.selectHosts(ctx, config.RoleLoadBalancers, func(h inventory.Host) bool {
		return h.State == inventory.Ready || h.State == inventory.Serving
	})
}

// updateLB points every load balancer at the workers now serving: the
// configuration is checked with nginx -t on each host before it replaces the
// running one, and a reload waits for the old nginx workers to finish their
// requests (so a worker taken out is drained when this returns). Its error
// wraps each load balancer's (lb.ErrRefused for a refused configuration).
func (s *session) updateLB(ctx context.Context) error {
	wr := s.env.Roles[config.RoleWorkers]
	if wr == nil || wr.Service == "" {
		return nil
	}
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return err
	}
	def, err := s.loadService(wr.Service)
	if err != nil {
		return err
	}
	workers, err := s.selectHosts(ctx, config.RoleWorkers, func(h inventory.Host) bool { return h.State == inventory.Serving })
	if err != nil {
		return err
	}
	var ups []string
	for _, w := range workers {
		ups = append(ups, net.JoinHostPort(w.Addr, strconv.Itoa(def.Port)))
	}
	tmpl := filepath.Join(s.r.Root, "nginx", "lb.conf.tmpl")
	confs := map[string][]byte{}
	for _, h := range lbs {
		conf, err := lb.Render(tmpl, lb.Config{Env: s.env.Name, Host: h.Name, Service: def.Name, Listen: LBPort, Workers: ups})
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		confs[h.Name] = conf
	}
	// A site's load balancers are given their configuration by its
	// conductors; the inventory is written here.
	o := opOptions{job: &conductor.Job{Kind: "lb", Idempotent: true},
		perHost: func(h inventory.Host) json.RawMessage { b, _ := json.Marshal(lbArgs{Conf: confs[h.Name]}); return b },
		conducted: func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result) {
			if r.Status != remote.OK {
				return
			}
			if err := s.advance(ctx, h.Name, inventory.Serving, ""); err != nil {
				r.Status, r.Err, r.Error = remote.Failed, err, err.Error()
			}
		}}
	results := s.each(ctx, lbs, remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.Command.D()}, o, func(ctx context.Context, c hostConn) error {
		h := c.Host()
		note, err := c.ApplyLB(ctx, confs[h.Name])
		if err != nil {
			return err
		}
		c.Note(note)
		return s.advance(ctx, h.Name, inventory.Serving, "")
	})
	if err := remote.Err(results); err != nil {
		return fmt.Errorf("load balancer update: %w", err)
	}
	return nil
}

// stopLB stops nginx on the load balancers.
func (s *session) stopLB(ctx context.Context) error {
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return err
	}
	_, err = s.op(ctx, "lb:stop", lbs, opOptions{}, func(ctx context.Context, c hostConn) error {
		if err := c.StopLB(ctx); err != nil {
			return err
		}
		if h := c.Host(); h.State == inventory.Serving {
			return s.advance(ctx, h.Name, inventory.Ready, "")
		}
		return nil
	})
	return err
}

// routes returns what each load balancer routes to now.
func (s *session) routes(ctx context.Context) map[string][]string {
	var mu sync.Mutex
	out := map[string][]string{}
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return out
	}
	s.io.Each(ctx, lbs, remote.Options{Parallel: s.r.Parallel}, func(ctx context.Context, c hostConn) error {
		r, err := c.Routes(ctx)
		if err == nil {
			mu.Lock()
			out[c.Host().Name] = r
			mu.Unlock()
		}
		return err
	})
	return out
}

// BenchLoad sends RATE requests a second for DURATION to the load balancer
// of ENV (the first one up) and prints the count of requests, of failures,
// and latency percentiles. BOOTED_LOAD_PATH sets the path (default /).
func (r *Runner) BenchLoad(ctx context.Context, envName string, d time.Duration, rate int) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		url, err := s.lbURL(ctx)
		if err != nil {
			return err
		}
		st, err := loadgen.Run(ctx, loadgen.Options{URL: url + r.LoadPath, Duration: d, Rate: float64(rate)})
		if err != nil {
			return err
		}
		if r.JSON {
			secs := func(d time.Duration) float64 { return d.Seconds() }
			rps := 0.0
			if st.Duration > 0 {
				rps = float64(st.Sent) / st.Duration.Seconds()
			}
			if err := json.NewEncoder(r.Out).Encode(struct {
				URL      string         `json:"url"`
				Sent     int            `json:"sent"`
				Failed   int            `json:"failed"`
				RPS      float64        `json:"requestsPerSecond"`
				P50      float64        `json:"p50Seconds"`
				P95      float64        `json:"p95Seconds"`
				P99      float64        `json:"p99Seconds"`
				Max      float64        `json:"maxSeconds"`
				Duration float64        `json:"durationSeconds"`
				Bodies   map[string]int `json:"bodies"`
				Errors   map[string]int `json:"errors"`
			}{url + r.LoadPath, st.Sent, st.Failed, rps, secs(st.P50), secs(st.P95), secs(st.P99), secs(st.Max), secs(st.Duration), st.Bodies, st.Errors}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(r.Out, "bench:load %s%s: %s\n", url, r.LoadPath, st)
			for msg, n := range st.Errors {
				fmt.Fprintf(r.Out, "  %d× %s\n", n, msg)
			}
		}
		if st.Failed > 0 {
			return fmt.Errorf("bench:load: %d of %d requests failed", st.Failed, st.Sent)
		}
		return nil
	})
}

// lbURL is the URL of the first load balancer that is serving.
func (s *session) lbURL(ctx context.Context) (string, error) {
	lbs, err := s.lbHosts(ctx)
	if err != nil {
		return "", err
	}
	for _, h := range lbs {
		if h.State == inventory.Serving {
			return "http://" + net.JoinHostPort(h.Addr, strconv.Itoa(LBPort)), nil
		}
	}
	return "", fmt.Errorf("%s: no load balancer is serving (env:startAll %s starts one)", s.env.Name, s.env.Name)
}
