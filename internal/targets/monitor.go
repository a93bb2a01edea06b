package targets

import (
	"context"

	"booted/internal/monitor"
	sess "booted/internal/session"
)

// MonitorRun runs the monitor daemon for ENV until SIGINT or SIGTERM:
// every interval it measures the service through the load balancer (its
// own probes and the load balancer's access log) and each worker's health,
// and scales the workers between min and max to hold the SLA of the env
// file's monitor section, replacing workers that stay unhealthy. SIGHUP
// reloads the env file (and its provider). BOOTED_DRY_RUN=1 only logs what
// it would do.
func (r *Runner) MonitorRun(ctx context.Context, envName string) error {
	return sess.RunMonitor(ctx, r.Options, envName)
}

// MonitorStatus prints the monitor's last measurements and decision, and
// the recent events of the environment.
func (r *Runner) MonitorStatus(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		return monitor.Kept{Store: s.Store, Env: s.Env.Name}.PrintStatus(ctx, r.Out, s.Env.Monitor.SLA.P95.D(), r.JSON)
	})
}
