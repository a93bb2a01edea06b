package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/conductord"
	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/natsconf"
	"booted/internal/remote"
	"booted/internal/report"
	"booted/internal/sitedio"
)

// NATSFiles are the NATS trust nats:config makes for the environment.
func (s *Session) NATSFiles() natsconf.Files {
	return natsconf.Files{Dir: filepath.Join(s.Dir, "nats")}
}

// NATSConnect connects to the env file's NATS cluster as name: as site's
// conductor or, with site "", as the controller (natsconf.Client).
func (s *Session) NATSConnect(name, site string, wait bool) (*nats.Conn, jetstream.JetStream, error) {
	return natsconf.Client{Env: s.Env, Files: s.NATSFiles(), Name: name, Site: site, Wait: wait, Credentials: s.NATSCredentials, Log: s.Err}.Connect()
}

// ControllerNATS is the session's connection to NATS as the controller,
// made (and the streams and buckets set up) at its first use and kept for
// the session's other operations (an env:startAll dispatches several).
func (s *Session) ControllerNATS(ctx context.Context) (jetstream.JetStream, error) {
	s.nats.Lock()
	defer s.nats.Unlock()
	if s.nats.js != nil {
		return s.nats.js, nil
	}
	nc, js, err := s.NATSConnect("booted controller "+s.Env.Name, "", false)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := conductor.Setup(sctx, js, s.replicas()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS %s: %w", strings.Join(s.Env.NATS.URLs, ","), err)
	}
	for _, site := range s.SortedSites() {
		if err := conductor.SetupSite(sctx, js, s.Env.Name, site, s.replicas()); err != nil {
			nc.Close()
			return nil, fmt.Errorf("NATS %s: site %s's files bucket: %w", strings.Join(s.Env.NATS.URLs, ","), site, err)
		}
	}
	s.nats.nc, s.nats.js = nc, js
	return js, nil
}

// replicas is how many copies of the streams the cluster keeps.
func (s *Session) replicas() int { return min(3, len(s.Env.NATS.URLs)) }

// Alive checks hosts (ping, a login against the pinned key): those of a
// site through its conductors, the others here; errs[i] for hosts[i].
func (s *Session) Alive(ctx context.Context, hosts []inventory.Host) []error {
	opt := remote.Options{Parallel: s.Parallel, Timeout: s.Env.Timeouts.SSH.D() + s.Env.Timeouts.Ping.D()}
	return s.Sites().Checked(ctx, hosts, opt, jobs.Op{Job: &conductor.Job{Kind: aliveJob, Idempotent: true}},
		func(ctx context.Context, here []inventory.Host) []error { return s.IO.Alive(ctx, here, s.Parallel) })
}

// DoJob does one job on its host, as the in-process path would (with the
// same functions), and says how it ended; it writes no inventory (the
// controller does, from the result).
func (s *Session) DoJob(ctx context.Context, js jetstream.JetStream, j conductor.Job) conductor.Result {
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
	if do, ok := jobs.LookupDirect(j.Kind); ok { // no connection made here: an alive check, a provider's act
		return do(ctx, worker{s}, j)
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
	res := s.IO.Each(ctx, []inventory.Host{h}, opt, step)[0]
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

// SortedSites are the env file\'s sites, sorted.
func (s *Session) SortedSites() []string {
	var out []string
	for n := range s.Env.Sites {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// RunConductor is conductor:run SITE of envName (conductord.Run), entering
// the site's network first when it has one on this machine.
func RunConductor(ctx context.Context, o Options, envName, site string) error {
	env, err := LoadEnv(o.Root, envName)
	if err != nil {
		return err
	}
	if err := conductord.EnterSite(env, site, o.Err); err != nil {
		return err
	}
	return View(ctx, o, envName, func(s *Session) error {
		if _, ok := s.Env.Sites[site]; ok {
			s.Conducting = site // it makes its site's hosts itself
		}
		return conductord.Run(ctx, conducting{s}, site, s.Parallel, s.Out, s.Err)
	})
}

// conducting is s as its site's conductor sees it (conductord.Site).
type conducting struct{ s *Session }

func (c conducting) Config() *config.Env { return c.s.Env }
func (c conducting) Connect(name, site string) (*nats.Conn, jetstream.JetStream, error) {
	return c.s.NATSConnect(name, site, true)
}
func (c conducting) Do(ctx context.Context, js jetstream.JetStream, j conductor.Job) conductor.Result {
	return c.s.DoJob(ctx, js, j)
}
func (c conducting) PrepareNetworks(ctx context.Context) error {
	if bp, err := c.s.Metal("conductor:run"); err == nil { // its site's networks: dnsmasq, the files its nginx serves
		return bp.PrepareNetworks(ctx)
	}
	return nil
}
func (c conducting) ServeCallbacks(ctx context.Context, js jetstream.JetStream, site string, logf func(string, ...any)) error {
	return c.s.ServeCallbacks(ctx, js, site, logf)
}
