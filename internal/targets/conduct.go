package targets

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	sess "booted/internal/session"

	"booted/internal/outcome"

	"booted/internal/bridge"
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
	if err := r.enterSite(envName, site); err != nil {
		return err
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		if _, ok := s.Env.Sites[site]; !ok {
			return outcome.Refuse("conductor:run: %s has no site %q (its sites: %s)", s.Env.Path, site, strings.Join(s.SortedSites(), ", "))
		}
		s.Conducting = site
		host, _ := os.Hostname()
		name := fmt.Sprintf("%s-%d", host, os.Getpid())
		nc, js, err := s.NATSConnect("booted conductor "+name, site, true)
		if err != nil {
			return err
		}
		defer nc.Close()
		logf := func(f string, a ...any) { fmt.Fprintf(r.Err, "conductor %s: "+f+"\n", append([]any{name}, a...)...) }
		c := &conductor.Conductor{JS: js, Env: s.Env.Name, Site: site, Name: name, Parallel: s.r.Parallel, AckWait: s.Env.NATS.AckWait.D(), // 0: the defaults, fanout.DefaultParallel and 10s
			Log: logf,
			Do:  func(ctx context.Context, j conductor.Job) conductor.Result { return s.DoJob(ctx, js, j) }}
		fmt.Fprintf(r.Out, "conductor %s: site %s of %s, NATS %s\n", name, site, s.Env.Name, strings.Join(s.Env.NATS.URLs, ","))
		if bp, err := s.Metal("conductor:run"); err == nil { // its site's networks: dnsmasq, the files its nginx serves
			if err := bp.PrepareNetworks(ctx); err != nil {
				return fmt.Errorf("site %s's networks: %w", site, err)
			}
		}
		if err := s.ServeCallbacks(ctx, js, site, logf); err != nil {
			return err
		}
		return c.Run(ctx)
	})
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

// siteNetnsEnv marks a conductor that entered its site's network.
const siteNetnsEnv = "BOOTED_SITE_NETNS"

// enterSite runs this conductor again inside its site's network, when the
// site has one of its own on this machine (a namespace: the site's
// machine) and it was started outside it: there it reaches its site's
// hosts and makes them, and takes their callbacks on the site's address.
// (The process stays the same: nsenter, then this program, in its place.)
func (r *Runner) enterSite(envName, site string) error {
	env, err := sess.LoadEnv(r.Root, envName)
	if err != nil {
		return err
	}
	st := env.Sites[site]
	if st == nil || st.Subnet == "" || len(env.NATS.URLs) == 0 {
		return nil // no network of its own
	}
	ns := bridge.SiteNetns(env.Name, site)
	if os.Getenv(siteNetnsEnv) == ns || bridge.InNetns(ns) {
		return nil // there already
	}
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		return fmt.Errorf("conductor:run: site %s's network (namespace %s) is not made on this machine: start the environment from its controller first (env:startAll %s)", site, ns, env.Name)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("conductor:run: entering site %s's network: %w (util-linux)", site, err)
	}
	fmt.Fprintf(r.Err, "conductor: site %s's network is namespace %s: running there\n", site, ns)
	args := append([]string{"nsenter", "--net=/run/netns/" + ns, "--", exe}, os.Args[1:]...)
	return syscall.Exec(nsenter, args, append(os.Environ(), siteNetnsEnv+"="+ns))
}
