package targets

import (
	"booted/internal/outcome"
	"context"
	"encoding/json"
	"errors"
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

// conducted runs tmpl's job on the hosts that have a site through their
// conductors and step on the others in-process, and returns one result
// per host; each sited host's output goes to opt.Output's writers as if it
// had run here.
func (s *session) conducted(ctx context.Context, hosts []inventory.Host, opt remote.Options, o opOptions, step func(ctx context.Context, c hostConn) error) []remote.Result {
	tmpl := *o.job
	var jobs []conductor.Job
	sited := map[string]inventory.Host{}
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())
	local, ofSites := s.bySite(hosts)
	for _, h := range ofSites {
		site := s.env.SiteOf(h.Name, h.Role)
		j := tmpl
		j.ID, j.Run, j.Env, j.Site = run+"."+h.Name, run, s.env.Name, site
		j.Host = conductor.HostRef{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: h.HostKey}
		if o.perHost != nil {
			j.Args = o.perHost(h)
		}
		sited[h.Name] = h
		j.Timeout = opt.Timeout
		if j.Timeout == 0 {
			j.Timeout = s.env.Timeouts.Command.D()
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return s.io.Each(ctx, local, opt, step)
	}
	// The hosts of no site, here, while the conductors work on the others.
	localDone := make(chan []remote.Result, 1)
	go func() { localDone <- s.io.Each(ctx, local, opt, step) }()
	results := s.dispatch(ctx, opt, o, run, jobs, sited)
	return append(<-localDone, results...)
}

// dispatch sends jobs to their sites' conductors and returns their results.
func (s *session) dispatch(ctx context.Context, opt remote.Options, o opOptions, run string, jobs []conductor.Job, hosts map[string]inventory.Host) []remote.Result {
	var results []remote.Result
	fail := func(err error) []remote.Result {
		for _, j := range jobs {
			r := remote.Result{Host: j.Host.Name, Status: remote.Failed, Err: fmt.Errorf("host %s: %w", j.Host.Name, err)}
			r.Error = r.Err.Error()
			if opt.OnDone != nil {
				opt.OnDone(r)
			}
			results = append(results, r)
		}
		return results
	}
	js, err := s.controllerNATS(ctx)
	if err != nil {
		return fail(err)
	}
	if o.beforeJobs != nil {
		bctx, bcancel := context.WithTimeout(ctx, 5*time.Minute)
		err := o.beforeJobs(bctx, js)
		bcancel()
		if err != nil {
			return fail(err)
		}
	}
	// r of cr, with what the controller makes of it (once per result).
	made := map[string]remote.Result{}
	var mu sync.Mutex
	result := func(cr conductor.Result) remote.Result {
		mu.Lock()
		defer mu.Unlock()
		if r, ok := made[cr.Host]; ok {
			return r
		}
		r := fromConducted(cr)
		if o.conducted != nil && cr.Conductor != "" {
			o.conducted(ctx, hosts[cr.Host], cr, &r)
		}
		made[cr.Host] = r
		return r
	}
	// A site with no conductor beating would keep its jobs waiting until
	// they time out: they fail now, saying what to start.
	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	beats, err := conductor.Conductors(bctx, js, s.env.Name)
	bcancel()
	if err != nil {
		return fail(fmt.Errorf("NATS %s: conductors: %w", strings.Join(s.env.NATS.URLs, ","), err))
	}
	beating := map[string]bool{}
	for _, b := range beats {
		beating[b.Site] = true
	}
	var live []conductor.Job
	for _, j := range jobs {
		if beating[j.Site] {
			live = append(live, j)
			continue
		}
		r := remote.Result{Host: j.Host.Name, Status: remote.Failed,
			Err: fmt.Errorf("host %s: no conductor of site %s is running (start one: conductor:run %s %s; conductors:list %s shows them)", j.Host.Name, j.Site, s.env.Name, j.Site, s.env.Name)}
		r.Error = r.Err.Error()
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
		results = append(results, r)
	}
	if jobs = live; len(jobs) == 0 {
		return results
	}
	// A job waits for its site's conductors (they may be busy) as long
	// as it may run, and a little more.
	dctx, cancel := context.WithTimeout(ctx, jobs[0].Timeout+30*time.Second)
	defer cancel()
	for _, j := range jobs {
		if opt.OnStart != nil {
			opt.OnStart(j.Host.Name)
		}
	}
	if o.job.Stream && opt.Output != nil {
		stop, err := s.streamOutput(js, run, hosts, opt)
		if err != nil {
			return fail(err)
		}
		defer stop()
	}
	res, _ := conductor.Dispatch(dctx, js, s.env.Name, run, jobs, func(cr conductor.Result) {
		r := result(cr)
		if opt.Output != nil && !o.job.Stream { // (a streaming job's output came as it was written)
			o, e := opt.Output(cr.Host)
			o.Write([]byte(cr.Stdout))
			e.Write([]byte(cr.Stderr))
		}
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
	})
	for _, cr := range res {
		r := result(cr)
		if cr.Conductor == "" && opt.OnDone != nil { // no result came: said now
			opt.OnDone(r)
		}
		results = append(results, r)
	}
	return results
}

// bySite splits hosts into those of no site (worked on here) and those of
// a site (through its conductors).
func (s *session) bySite(hosts []inventory.Host) (here, sited []inventory.Host) {
	for _, h := range hosts {
		if s.env.SiteOf(h.Name, h.Role) == "" {
			here = append(here, h)
		} else {
			sited = append(sited, h)
		}
	}
	return here, sited
}

// natsWriter publishes what is written to it on a subject (core NATS).
type natsWriter struct {
	nc   *nats.Conn
	subj string
}

func (w natsWriter) Write(p []byte) (int, error) {
	for sent := 0; sent < len(p); { // in pieces well under a message's size
		n := min(len(p)-sent, 64<<10)
		if err := w.nc.Publish(w.subj, p[sent:sent+n]); err != nil {
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

// streamOutput shows the output of a run's streaming jobs as it comes:
// each host's, from its own site's subject only, to opt.Output's writers.
func (s *session) streamOutput(js jetstream.JetStream, run string, hosts map[string]inventory.Host, opt remote.Options) (stop func(), err error) {
	var mu sync.Mutex
	ws := map[string][2]io.Writer{}
	sub, err := js.Conn().Subscribe("booted.output."+s.env.Name+".*."+run+".>", func(m *nats.Msg) {
		t := strings.Split(m.Subject, ".") // booted.output.ENV.SITE.RUN.HOST.STREAM
		if len(t) != 7 {
			return
		}
		site, host, stream := t[3], t[5], t[6]
		h, ok := hosts[host]
		if !ok || s.env.SiteOf(h.Name, h.Role) != site {
			return // not this run's host, or not from its site
		}
		mu.Lock()
		defer mu.Unlock()
		w, ok := ws[host]
		if !ok {
			o, e := opt.Output(host)
			w = [2]io.Writer{o, e}
			ws[host] = w
		}
		if stream == "err" {
			w[1].Write(m.Data)
		} else {
			w[0].Write(m.Data)
		}
	})
	if err != nil {
		return nil, err
	}
	return func() { sub.Drain() }, nil
}

// aliveJob is the job a conductor checks a host with (doJob).
const aliveJob = "alive"

// alive checks hosts (ping, a login against the pinned key): those of a
// site through its conductors, the others here; errs[i] for hosts[i].
func (s *session) alive(ctx context.Context, hosts []inventory.Host) []error {
	opt := remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.SSH.D() + s.env.Timeouts.Ping.D()}
	return s.checked(ctx, hosts, opt, opOptions{job: &conductor.Job{Kind: aliveJob, Idempotent: true}},
		func(ctx context.Context, here []inventory.Host) []error { return s.io.Alive(ctx, here, s.r.Parallel) })
}

// checked checks hosts without a connection made here: here checks the
// hosts of no site, o's job the others through their sites' conductors
// (a step over a connection is split by conducted); errs[i] for hosts[i].
func (s *session) checked(ctx context.Context, hosts []inventory.Host, opt remote.Options, o opOptions, here func(ctx context.Context, hosts []inventory.Host) []error) []error {
	local, sited := s.bySite(hosts)
	byHost := make(map[string]error, len(hosts))
	for i, err := range here(ctx, local) {
		byHost[local[i].Name] = err
	}
	if len(sited) > 0 {
		for _, r := range s.conducted(ctx, sited, opt, o, nil) {
			byHost[r.Host] = r.Err
			if r.Err == nil && r.Status != remote.OK {
				byHost[r.Host] = fmt.Errorf("host %s: %s", r.Host, r.Status)
			}
		}
	}
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		errs[i] = byHost[h.Name]
	}
	return errs
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// lbArgs are a load balancer job's: its configuration, rendered here.
type lbArgs struct {
	Conf []byte `json:"conf"`
}

func fromConducted(cr conductor.Result) remote.Result {
	r := remote.Result{Host: cr.Host, Status: remote.Status(cr.Status), Seconds: cr.Seconds, Duration: time.Duration(cr.Seconds * float64(time.Second)), Error: cr.Error, Stderr: tailLines(cr.Stderr, 5)}
	if cr.Error != "" {
		r.Err = errors.New(cr.Error)
	}
	if r.Status == remote.OK {
		r.Stderr = ""
		r.Note = strings.TrimSpace(cr.Note + " by conductor " + cr.Conductor)
	}
	return r
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
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
			return natsWriter{nc, conductor.OutputSubject(j.Env, j.Site, j.Run, host, "out")}, natsWriter{nc, conductor.OutputSubject(j.Env, j.Site, j.Run, host, "err")}
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
	mk, ok := jobKinds[j.Kind]
	if !ok {
		return failed(fmt.Errorf("job kind %q is not one this conductor does", j.Kind))
	}
	host, err := mk(s, ctx, js, j)
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
