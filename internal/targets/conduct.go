package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/natsconf"
	"booted/internal/remote"
	"booted/internal/report"
)

// natsFiles are the NATS trust nats:config makes for the environment.
func (s *session) natsFiles() natsconf.Files {
	return natsconf.Files{Dir: filepath.Join(s.dir, "nats")}
}

// natsConnect connects to the env file's NATS cluster as name: as site's
// conductor (its credentials, its own inbox) or, with site "", as the
// controller; over TLS checked against nats.ca (or nats:config's CA).
// wait keeps trying when no server answers yet (a conductor), else that
// fails at once (a target).
func (s *session) natsConnect(name, site string, wait bool) (*nats.Conn, jetstream.JetStream, error) {
	n := s.env.NATS
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond), nats.Timeout(5 * time.Second),
		nats.RetryOnFailedConnect(wait),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { fmt.Fprintf(s.r.Err, "%s: nats: %v\n", name, err) })}
	files := s.natsFiles()
	credField, cred := "nats.credentials", n.Credentials
	if cred == "" {
		cred = ifExists(files.Controller())
	}
	if site != "" {
		opts = append(opts, nats.CustomInboxPrefix(conductor.InboxPrefix(s.env.Name, site)))
		credField, cred = "sites."+site+".credentials", s.env.Sites[site].Credentials
		if cred == "" {
			cred = ifExists(files.Site(site))
		}
		if cred == "" {
			credField, cred = "nats.credentials", n.Credentials
		}
	}
	if cred != "" {
		b, err := os.ReadFile(cred)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", s.env.Path, credField, err)
		}
		if strings.Contains(string(b), "BEGIN NATS USER JWT") {
			opts = append(opts, nats.UserCredentials(cred))
		} else {
			o, err := nats.NkeyOptionFromSeed(cred)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %s %s: %w", s.env.Path, credField, cred, err)
			}
			opts = append(opts, o)
		}
	}
	ca := n.CA
	if ca == "" {
		ca = ifExists(files.CA())
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	nc, err := nats.Connect(strings.Join(n.URLs, ","), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: NATS %s: %w", s.env.Path, strings.Join(n.URLs, ","), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func ifExists(path string) string {
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// NATSConfig makes the trust of ENV's NATS cluster (nats:config): a CA
// and the servers' certificate, an nkey seed for the controller and one
// per site (0600, under inventory/ENV/nats, kept when there), and each
// server's configuration, whose users are those keys (a site's may take
// only its site's jobs). It prints how to start the servers.
func (r *Runner) NATSConfig(ctx context.Context, envName string) error {
	return r.withEnv(ctx, envName, func(s *session) error {
		if len(s.env.NATS.URLs) == 0 {
			return &inputError{fmt.Sprintf("nats:config: %s names no NATS cluster (nats.urls)", s.env.Path)}
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

// replicas is how many copies of the streams the cluster keeps.
func (s *session) replicas() int { return min(3, len(s.env.NATS.URLs)) }

// conducted runs tmpl's job on the hosts that have a site through their
// conductors and step on the others in-process, and returns one result
// per host; each sited host's output goes to opt.Output's writers as if it
// had run here.
func (s *session) conducted(ctx context.Context, hosts []inventory.Host, opt remote.Options, tmpl conductor.Job, step func(ctx context.Context, c hostConn) error) []remote.Result {
	var local []inventory.Host
	var jobs []conductor.Job
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())
	for _, h := range hosts {
		site := s.env.SiteOf(h.Name, h.Role)
		if site == "" {
			local = append(local, h)
			continue
		}
		j := tmpl
		j.ID, j.Run, j.Env, j.Site = run+"."+h.Name, run, s.env.Name, site
		j.Host = conductor.HostRef{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: h.HostKey}
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
	results := s.dispatch(ctx, opt, run, jobs)
	return append(<-localDone, results...)
}

// dispatch sends jobs to their sites' conductors and returns their results.
func (s *session) dispatch(ctx context.Context, opt remote.Options, run string, jobs []conductor.Job) []remote.Result {
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
	nc, js, err := s.natsConnect("booted controller "+s.env.Name, "", false)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	err = conductor.Setup(sctx, js, s.replicas())
	scancel()
	if err != nil {
		return fail(fmt.Errorf("NATS %s: %w", strings.Join(s.env.NATS.URLs, ","), err))
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
	res, _ := conductor.Dispatch(dctx, js, s.env.Name, run, jobs, func(cr conductor.Result) {
		r := fromConducted(cr)
		if opt.Output != nil {
			o, e := opt.Output(cr.Host)
			o.Write([]byte(cr.Stdout))
			e.Write([]byte(cr.Stderr))
		}
		if opt.OnDone != nil {
			opt.OnDone(r)
		}
	})
	for _, cr := range res {
		r := fromConducted(cr)
		if cr.Conductor == "" && opt.OnDone != nil { // no result came: said now
			opt.OnDone(r)
		}
		results = append(results, r)
	}
	return results
}

func fromConducted(cr conductor.Result) remote.Result {
	r := remote.Result{Host: cr.Host, Status: remote.Status(cr.Status), Seconds: cr.Seconds, Duration: time.Duration(cr.Seconds * float64(time.Second)), Error: cr.Error, Stderr: tailLines(cr.Stderr, 5)}
	if cr.Error != "" {
		r.Err = errors.New(cr.Error)
	}
	if r.Status == remote.OK {
		r.Stderr = ""
		r.Note = "by conductor " + cr.Conductor
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
	return r.withEnv(ctx, envName, func(s *session) error {
		if _, ok := s.env.Sites[site]; !ok {
			return &inputError{fmt.Sprintf("conductor:run: %s has no site %q (its sites: %s)", s.env.Path, site, strings.Join(sortedSites(s), ", "))}
		}
		host, _ := os.Hostname()
		name := fmt.Sprintf("%s-%d", host, os.Getpid())
		nc, js, err := s.natsConnect("booted conductor "+name, site, true)
		if err != nil {
			return err
		}
		defer nc.Close()
		c := &conductor.Conductor{JS: js, Env: s.env.Name, Site: site, Name: name, Parallel: max(s.r.Parallel, 16),
			Log: func(f string, a ...any) { fmt.Fprintf(r.Err, "conductor %s: "+f+"\n", append([]any{name}, a...)...) },
			Do:  func(ctx context.Context, j conductor.Job) conductor.Result { return s.doJob(ctx, j) }}
		fmt.Fprintf(r.Out, "conductor %s: taking the jobs of site %s of %s from %s\n", name, site, s.env.Name, strings.Join(s.env.NATS.URLs, ","))
		return c.Run(ctx)
	})
}

// doJob does one job on its host, as the in-process path would.
func (s *session) doJob(ctx context.Context, j conductor.Job) conductor.Result {
	h := inventory.Host{Env: j.Env, Name: j.Host.Name, Addr: j.Host.Addr, Port: j.Host.Port, HostKey: j.Host.HostKey}
	capture := report.NewHostCapture()
	opt := remote.Options{Timeout: j.Timeout, Output: capture.Writers}
	var step func(ctx context.Context, c hostConn) error
	switch j.Kind {
	case "run":
		step = func(ctx context.Context, c hostConn) error { return c.Run(ctx, j.Cmd) }
	default:
		return conductor.Result{Status: string(remote.Failed), Error: fmt.Sprintf("host %s: job kind %q is not one this conductor does", j.Host.Name, j.Kind)}
	}
	res := s.io.Each(ctx, []inventory.Host{h}, opt, step)[0]
	out, errs := capture.Take(h.Name)
	return conductor.Result{Status: string(res.Status), Stdout: out, Stderr: errs, Error: res.Error}
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
			return &inputError{fmt.Sprintf("conductors:list: %s names no NATS cluster (nats.urls) and no sites: everything runs in the target's own process", s.env.Path)}
		}
		nc, js, err := s.natsConnect("booted conductors:list", "", false)
		if err != nil {
			return err
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := conductor.Setup(ctx, js, s.replicas()); err != nil {
			return err
		}
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
