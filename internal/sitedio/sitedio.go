// Package sitedio is the one place that decides where a host's work
// runs: a host of no site here (Here), a host of one of the env file's
// sites through its site's conductors over NATS JetStream, each with the
// same job (package jobs) and its result recorded here as it comes.
package sitedio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/report"
)

// Here works on hosts from this process (fleet.SSH, or the fast tests'
// fakes).
type Here interface {
	Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, step func(ctx context.Context, c fleet.Conn) error) []remote.Result
}

// Split works on an environment's hosts here or through their sites'
// conductors.
type Split struct {
	Env  *config.Env
	Here Here
	// NATS is the controller's connection to the env file's NATS cluster
	// (made at its first use, by the caller).
	NATS func(ctx context.Context) (jetstream.JetStream, error)
}

// Each runs step on hosts: those of a site through its conductors when o
// has a job (and the env file has sites), the others here.
func (s *Split) Each(ctx context.Context, hosts []inventory.Host, opt remote.Options, o jobs.Op, step jobs.Step) []remote.Result {
	if o.Job != nil && len(s.Env.Sites) > 0 {
		return s.Conducted(ctx, hosts, opt, o, step)
	}
	return s.Here.Each(ctx, hosts, opt, step)
}

// Conducted runs tmpl's job on the hosts that have a site through their
// conductors and step on the others in-process, and returns one result
// per host; each sited host's output goes to opt.Output's writers as if it
// had run here.
func (s *Split) Conducted(ctx context.Context, hosts []inventory.Host, opt remote.Options, o jobs.Op, step jobs.Step) []remote.Result {
	tmpl := *o.Job
	var jobs []conductor.Job
	sited := map[string]inventory.Host{}
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())
	local, ofSites := s.BySite(hosts)
	for _, h := range ofSites {
		site := s.Env.SiteOf(h.Name, h.Role)
		j := tmpl
		j.ID, j.Run, j.Env, j.Site = run+"."+h.Name, run, s.Env.Name, site
		j.Host = conductor.HostRef{Name: h.Name, Addr: h.Addr, Port: h.Port, HostKey: h.HostKey}
		if o.PerHost != nil {
			j.Args = o.PerHost(h)
		}
		sited[h.Name] = h
		j.Timeout = opt.Timeout
		if j.Timeout == 0 {
			j.Timeout = s.Env.Timeouts.Command.D()
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return s.Here.Each(ctx, local, opt, step)
	}
	// The hosts of no site, here, while the conductors work on the others.
	localDone := make(chan []remote.Result, 1)
	go func() { localDone <- s.Here.Each(ctx, local, opt, step) }()
	results := s.Dispatch(ctx, opt, o, run, jobs, sited)
	return append(<-localDone, results...)
}

// Dispatch sends jobs to their sites' conductors and returns their results.
func (s *Split) Dispatch(ctx context.Context, opt remote.Options, o jobs.Op, run string, jobs []conductor.Job, hosts map[string]inventory.Host) []remote.Result {
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
	js, err := s.NATS(ctx)
	if err != nil {
		return fail(err)
	}
	if o.BeforeJobs != nil {
		bctx, bcancel := context.WithTimeout(ctx, 5*time.Minute)
		err := o.BeforeJobs(bctx, js)
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
		r := FromConducted(cr)
		if o.Conducted != nil && cr.Conductor != "" {
			o.Conducted(ctx, hosts[cr.Host], cr, &r)
		}
		made[cr.Host] = r
		return r
	}
	// A site with no conductor beating would keep its jobs waiting until
	// they time out: they fail now, saying what to start.
	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	beats, err := conductor.Conductors(bctx, js, s.Env.Name)
	bcancel()
	if err != nil {
		return fail(fmt.Errorf("NATS %s: conductors: %w", strings.Join(s.Env.NATS.URLs, ","), err))
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
			Err: fmt.Errorf("host %s: no conductor of site %s is running (start one: conductor:run %s %s; conductors:list %s shows them)", j.Host.Name, j.Site, s.Env.Name, j.Site, s.Env.Name)}
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
	if o.Job.Stream && opt.Output != nil {
		stop, err := s.streamOutput(js, run, hosts, opt)
		if err != nil {
			return fail(err)
		}
		defer stop()
	}
	res, _ := conductor.Dispatch(dctx, js, s.Env.Name, run, jobs, func(cr conductor.Result) {
		r := result(cr)
		if opt.Output != nil && !o.Job.Stream { // (a streaming job's output came as it was written)
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

// BySite splits hosts into those of no site (worked on here) and those of
// a site (through its conductors).
func (s *Split) BySite(hosts []inventory.Host) (here, sited []inventory.Host) {
	for _, h := range hosts {
		if s.Env.SiteOf(h.Name, h.Role) == "" {
			here = append(here, h)
		} else {
			sited = append(sited, h)
		}
	}
	return here, sited
}

// Writer publishes what is written to it on a subject (core NATS).
type Writer struct {
	NC      *nats.Conn
	Subject string
}

// Write publishes p in pieces.
func (w Writer) Write(p []byte) (int, error) {
	for sent := 0; sent < len(p); { // in pieces well under a message's size
		n := min(len(p)-sent, 64<<10)
		if err := w.NC.Publish(w.Subject, p[sent:sent+n]); err != nil {
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

// streamOutput shows the output of a run's streaming jobs as it comes:
// each host's, from its own site's subject only, to opt.Output's writers.
func (s *Split) streamOutput(js jetstream.JetStream, run string, hosts map[string]inventory.Host, opt remote.Options) (stop func(), err error) {
	var mu sync.Mutex
	ws := map[string][2]io.Writer{}
	sub, err := js.Conn().Subscribe("booted.output."+s.Env.Name+".*."+run+".>", func(m *nats.Msg) {
		t := strings.Split(m.Subject, ".") // booted.output.ENV.SITE.RUN.HOST.STREAM
		if len(t) != 7 {
			return
		}
		site, host, stream := t[3], t[5], t[6]
		h, ok := hosts[host]
		if !ok || s.Env.SiteOf(h.Name, h.Role) != site {
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

// Checked checks hosts without a connection made here: here checks the
// hosts of no site, o's job the others through their sites' conductors
// (a step over a connection is split by conducted); errs[i] for hosts[i].
func (s *Split) Checked(ctx context.Context, hosts []inventory.Host, opt remote.Options, o jobs.Op, here func(ctx context.Context, hosts []inventory.Host) []error) []error {
	local, sited := s.BySite(hosts)
	byHost := make(map[string]error, len(hosts))
	for i, err := range here(ctx, local) {
		byHost[local[i].Name] = err
	}
	if len(sited) > 0 {
		for _, r := range s.Conducted(ctx, sited, opt, o, nil) {
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

func FromConducted(cr conductor.Result) remote.Result {
	r := remote.Result{Host: cr.Host, Status: remote.Status(cr.Status), Seconds: cr.Seconds, Duration: time.Duration(cr.Seconds * float64(time.Second)), Error: cr.Error, Stderr: report.TailLines(cr.Stderr, 5)}
	if cr.Error != "" {
		r.Err = errors.New(cr.Error)
	}
	if r.Status == remote.OK {
		r.Stderr = ""
		r.Note = strings.TrimSpace(cr.Note + " by conductor " + cr.Conductor)
	}
	return r
}
