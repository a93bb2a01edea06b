package targets

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	sess "booted/internal/session"

	"booted/internal/outcome"

	"booted/internal/conductor"
	"booted/internal/natsconf"
)

// NATSConfig makes the trust of ENV's NATS cluster (nats:config): a CA
// and the servers' certificate, an nkey seed for the controller and one
// per site (0600, under inventory/ENV/nats, kept when there), and each
// server's configuration, whose users are those keys (a site's may take
// only its site's jobs). It prints how to start the servers.
func (r *Runner) NATSConfig(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if len(s.Env.NATS.URLs) == 0 {
			return outcome.Refuse("nats:config: %s names no NATS cluster (nats.urls)", s.Env.Path)
		}
		confs, err := natsconf.Make(s.NATSFiles(), natsconf.Spec{Env: s.Env.Name, URLs: s.Env.NATS.URLs, Routes: s.Env.NATS.Routes, Sites: s.SortedSites()})
		if err != nil {
			return fmt.Errorf("%s: nats: %w", s.Env.Path, err)
		}
		fmt.Fprintf(r.Out, "NATS trust of %s in %s: CA, server certificate, the controller's nkey and one per site (%s)\n", s.Env.Name, s.NATSFiles().Dir, strings.Join(s.SortedSites(), ", "))
		for _, c := range confs {
			fmt.Fprintf(r.Out, "start: nats-server -c %s\n", c)
		}
		return nil
	})
}

// ConductorRun takes the jobs of SITE of ENV from NATS until it is
// stopped (Ctrl-C, SIGTERM), doing each with the functions the targets
// use in-process, over its own SSH connections to the site's hosts.
func (r *Runner) ConductorRun(ctx context.Context, envName, site string) error {
	return sess.RunConductor(ctx, r.Options, envName, site)
}

// ConductorsList shows the conductors beating for ENV: site, name, since,
// last beat, jobs done.
func (r *Runner) ConductorsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if len(s.Env.NATS.URLs) == 0 {
			return outcome.Refuse("conductors:list: %s names no NATS cluster (nats.urls) and no sites: everything runs in the target's own process", s.Env.Path)
		}
		js, err := s.ControllerNATS(ctx)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		beats, err := conductor.Conductors(ctx, js, s.Env.Name)
		if err != nil {
			return err
		}
		sort.Slice(beats, func(i, j int) bool { return beats[i].Site+beats[i].Name < beats[j].Site+beats[j].Name })
		return printRows(r, beats, []string{"SITE", "CONDUCTOR", "SINCE", "LAST BEAT", "JOBS DONE"}, func(b conductor.Heartbeat) []string {
			return []string{b.Site, b.Name, b.Since.Format(time.RFC3339), time.Since(b.Beat).Round(time.Second).String() + " ago", strconv.Itoa(b.Done)}
		})
	})
}
