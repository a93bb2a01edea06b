package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"booted/internal/jobs"
	"booted/internal/outcome"
	"booted/internal/sitedio"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/bridge"
	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/natsconf"
	"booted/internal/provider/sited"
	"booted/internal/remote"
	"booted/internal/report"
)

// natsFiles are the NATS trust nats:config makes for the environment.
func (s *session) natsFiles() natsconf.Files {
	return natsconf.Files{Dir: filepath.Join(s.dir, "nats")}
}

// natsConnect connects to the env file's NATS cluster as name: as site's
// conductor or, with site "", as the controller (natsconf.Client).
func (s *session) natsConnect(name, site string, wait bool) (*nats.Conn, jetstream.JetStream, error) {
	return natsconf.Client{Env: s.env, Files: s.natsFiles(), Name: name, Site: site, Wait: wait, Credentials: s.r.NATSCredentials, Log: s.r.Err}.Connect()
}

// NATSConfig makes the trust of ENV's NATS cluster (nats:config): a CA
// and the servers' certificate, an nkey seed for the controller and one
// per site (0600, under inventory/ENV/nats, kept when there), and each
// server's configuration, whose users are those keys (a site's may take
// only its site's jobs). It prints how to start the servers.
func (r *Runner) NATSConfig(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if len(s.env.NATS.URLs) == 0 {
			return outcome.Refuse("nats:config: %s names no NATS cluster (nats.urls)", s.env.Path)
		}
		confs, err := natsconf.Make(s.natsFiles(), natsconf.Spec{Env: s.env.Name, URLs: s.env.NATS.URLs, Routes: s.env.NATS.Routes, Sites: sortedSites(s)})
		if err != nil {
			return fmt.Errorf("%s: nats: %w", s.env.Path, err)
		}
		fmt.Fprintf(r.Out, "NATS trust of %s in %s: CA, server certificate, the controller's nkey and one per site (%s)\n", s.env.Name, s.natsFiles().Dir, strings.Join(sortedSites(s), ", "))
		for _, c := range confs {
			fmt.Fprintf(r.Out, "start: nats-server -c %s\n", c)
		}
		return nil
	})
}

// controllerNATS is the session's connection to NATS as the controller,
// made (and the streams and buckets set up) at its first use and kept for
// the session's other operations (an env:startAll dispatches several).
func (s *session) controllerNATS(ctx context.Context) (jetstream.JetStream, error) {
	s.nats.Lock()
	defer s.nats.Unlock()
	if s.nats.js != nil {
		return s.nats.js, nil
	}
	nc, js, err := s.natsConnect("booted controller "+s.env.Name, "", false)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := conductor.Setup(sctx, js, s.replicas()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS %s: %w", strings.Join(s.env.NATS.URLs, ","), err)
	}
	for _, site := range sortedSites(s) {
		if err := conductor.SetupSite(sctx, js, s.env.Name, site, s.replicas()); err != nil {
			nc.Close()
			return nil, fmt.Errorf("NATS %s: site %s's files bucket: %w", strings.Join(s.env.NATS.URLs, ","), site, err)
		}
	}
	s.nats.nc, s.nats.js = nc, js
	return js, nil
}

// replicas is how many copies of the streams the cluster keeps.
func (s *session) replicas() int { return min(3, len(s.env.NATS.URLs)) }

// aliveJob is the job a conductor checks a host with (doJob).
const aliveJob = "alive"

// alive checks hosts (ping, a login against the pinned key): those of a
// site through its conductors, the others here; errs[i] for hosts[i].
func (s *session) alive(ctx context.Context, hosts []inventory.Host) []error {
	opt := remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.SSH.D() + s.env.Timeouts.Ping.D()}
	return s.sites().Checked(ctx, hosts, opt, jobs.Op{Job: &conductor.Job{Kind: aliveJob, Idempotent: true}},
		func(ctx context.Context, here []inventory.Host) []error { return s.io.Alive(ctx, here, s.r.Parallel) })
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// lbArgs are a load balancer job's: its configuration, rendered here.
type lbArgs struct {
	Conf []byte `json:"conf"`
}

// ConductorRun takes the jobs of SITE of ENV from NATS until it is
// stopped (Ctrl-C, SIGTERM), doing each with the functions the targets
// use in-process, over its own SSH connections to the site's hosts.
func (r *Runner) ConductorRun(ctx context.Context, envName, site string) error {
	if err := r.enterSite(envName, site); err != nil {
		return err
	}
	return r.withEnv(ctx, envName, func(s *session) error {
		if _, ok := s.env.Sites[site]; !ok {
			return outcome.Refuse("conductor:run: %s has no site %q (its sites: %s)", s.env.Path, site, strings.Join(sortedSites(s), ", "))
		}
		s.conducting = site
		host, _ := os.Hostname()
		name := fmt.Sprintf("%s-%d", host, os.Getpid())
		nc, js, err := s.natsConnect("booted conductor "+name, site, true)
		if err != nil {
			return err
		}
		defer nc.Close()
		logf := func(f string, a ...any) { fmt.Fprintf(r.Err, "conductor %s: "+f+"\n", append([]any{name}, a...)...) }
		c := &conductor.Conductor{JS: js, Env: s.env.Name, Site: site, Name: name, Parallel: s.r.Parallel, AckWait: s.env.NATS.AckWait.D(), // 0: the defaults, fanout.DefaultParallel and 10s
			Log: logf,
			Do:  func(ctx context.Context, j conductor.Job) conductor.Result { return s.doJob(ctx, js, j) }}
		fmt.Fprintf(r.Out, "conductor %s: site %s of %s, NATS %s\n", name, site, s.env.Name, strings.Join(s.env.NATS.URLs, ","))
		if bp, err := s.metal("conductor:run"); err == nil { // its site's networks: dnsmasq, the files its nginx serves
			if err := bp.PrepareNetworks(ctx); err != nil {
				return fmt.Errorf("site %s's networks: %w", site, err)
			}
		}
		if err := s.serveCallbacks(ctx, js, site, logf); err != nil {
			return err
		}
		return c.Run(ctx)
	})
}

// doJob does one job on its host, as the in-process path would (with the
// same functions), and says how it ended; it writes no inventory (the
// controller does, from the result).
func (s *session) doJob(ctx context.Context, js jetstream.JetStream, j conductor.Job) conductor.Result {
	h := inventory.Host{Env: j.Env, Name: j.Host.Name, Addr: j.Host.Addr, Port: j.Host.Port, HostKey: j.Host.HostKey}
	capture := report.NewHostCapture()
	opt := remote.Options{Timeout: j.Timeout, Output: capture.Writers}
	if j.Stream { // sent as it comes, for the controller to show live
		nc := js.Conn()
		opt.Output = func(host string) (io.Writer, io.Writer) {
			return sitedio.Writer{NC: nc, Subject: conductor.OutputSubject(j.Env, j.Site, j.Run, host, "out")}, sitedio.Writer{NC: nc, Subject: conductor.OutputSubject(j.Env, j.Site, j.Run, host, "err")}
		}
	}
	failed := func(err error) conductor.Result {
		return conductor.Result{Status: string(remote.Failed), Error: fmt.Sprintf("host %s: %v", j.Host.Name, err)}
	}
	if strings.HasPrefix(j.Kind, sited.JobPrefix) { // the site's provider's: no connection to the host
		return sited.Do(ctx, s.provOf, j)
	}
	if j.Kind == aliveJob { // ping and a login against the pinned key, the connection kept
		if err := s.io.Alive(ctx, []inventory.Host{h}, 1)[0]; err != nil {
			return conductor.Result{Status: string(remote.Failed), Error: err.Error()}
		}
		return conductor.Result{Status: string(remote.OK)}
	}
	mk, ok := jobs.Lookup(j.Kind)
	if !ok {
		return failed(fmt.Errorf("job kind %q is not one this conductor does", j.Kind))
	}
	host, err := mk(worker{s}, ctx, js, j)
	if err != nil {
		return failed(err)
	}
	var mu sync.Mutex
	var data any
	step := func(ctx context.Context, c hostConn) error {
		d, err := host(ctx, c)
		mu.Lock()
		data = d
		mu.Unlock()
		return err
	}
	res := s.io.Each(ctx, []inventory.Host{h}, opt, step)[0]
	out, errs := capture.Take(h.Name)
	r := conductor.Result{Status: string(res.Status), Stdout: out, Stderr: errs, Error: res.Error, Note: res.Note}
	if r.Error != "" && !strings.HasPrefix(r.Error, "host "+h.Name+":") { // every failure names its host
		r.Error = "host " + h.Name + ": " + r.Error
	}
	mu.Lock()
	if data != nil {
		r.Data, _ = json.Marshal(data)
	}
	mu.Unlock()
	return r
}

func sortedSites(s *session) []string {
	var out []string
	for n := range s.env.Sites {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ConductorsList shows the conductors beating for ENV: site, name, since,
// last beat, jobs done.
func (r *Runner) ConductorsList(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if len(s.env.NATS.URLs) == 0 {
			return outcome.Refuse("conductors:list: %s names no NATS cluster (nats.urls) and no sites: everything runs in the target's own process", s.env.Path)
		}
		js, err := s.controllerNATS(ctx)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		beats, err := conductor.Conductors(ctx, js, s.env.Name)
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
	env, err := r.loadEnv(envName)
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
