package targets

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
// requests (so a worker taken out is drained when this returns).
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
	pool := remote.NewPool(s.auth(), s.env.Timeouts.SSH.D())
	defer pool.Close()
	var errs []string
	results := pool.Each(ctx, targetsOf(lbs), remote.Options{Timeout: s.env.Timeouts.Command.D()}, func(ctx context.Context, rs *remote.Session) error {
		conf, err := lb.Render(tmpl, lb.Config{Env: s.env.Name, Host: rs.Target.Name, Service: def.Name, Listen: LBPort, Workers: ups})
		if err != nil {
			return err
		}
		rs.Note, err = lb.Apply(ctx, rs, conf)
		if err != nil {
			return err
		}
		return s.walk(ctx, rs.Target.Name, inventory.Ready, inventory.Serving)
	})
	for _, r := range results {
		if r.Status != remote.OK {
			msg := r.Host + ": " + r.Error
			if r.Stderr != "" {
				msg += ": " + strings.ReplaceAll(r.Stderr, "\n", " | ")
			}
			errs = append(errs, msg)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("load balancer update: %s", strings.Join(errs, "; "))
	}
	return nil
}

func targetsOf(hosts []inventory.Host) []remote.Target {
	var out []remote.Target
	for _, h := range hosts {
		if t, err := target(h); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// stopLB stops nginx on the load balancers.
func (s *session) stopLB(ctx context.Context) error {
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return err
	}
	_, err = s.op(ctx, "lb:stop", lbs, opOptions{}, func(ctx context.Context, rs *remote.Session, h inventory.Host) error {
		if err := lb.Stop(ctx, rs); err != nil {
			return err
		}
		if h.State == inventory.Serving {
			return s.walk(ctx, h.Name, inventory.Draining, inventory.Ready)
		}
		return nil
	})
	return err
}

// routes returns what each load balancer routes to now.
func (s *session) routes(ctx context.Context) map[string][]string {
	out := map[string][]string{}
	lbs, err := s.lbHosts(ctx)
	if err != nil || len(lbs) == 0 {
		return out
	}
	pool := remote.NewPool(s.auth(), s.env.Timeouts.SSH.D())
	defer pool.Close()
	pool.Each(ctx, targetsOf(lbs), remote.Options{}, func(ctx context.Context, rs *remote.Session) error {
		r, err := lb.Routes(ctx, rs)
		if err == nil {
			out[rs.Target.Name] = r
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
		path := os.Getenv("BOOTED_LOAD_PATH")
		if path == "" {
			path = "/"
		}
		st, err := loadgen.Run(ctx, loadgen.Options{URL: url + path, Duration: d, Rate: float64(rate)})
		if err != nil {
			return err
		}
		fmt.Fprintf(r.Out, "bench:load %s%s: %s\n", url, path, st)
		for msg, n := range st.Errors {
			fmt.Fprintf(r.Out, "  %d× %s\n", n, msg)
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
