package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"booted/internal/conductor"
	"booted/internal/fanout"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/remote"
)

// A site with a network of its own (sites.X.subnet) makes its hosts
// itself: the controller asks the site's conductors, which run in the
// site's network (its namespace, on this machine) and build, boot, power
// off and delete the host with their own provider: the same functions the
// controller uses for the hosts of no site (its local hosts, and its
// bare-metal nodes on its networks, whose BMCs and netboot are the site's
// too). The host's callback comes through its site (sitecallbacks.go);
// the inventory is written here.

// hostJobPrefix starts the kinds of the provider's jobs: host.build,
// host.boot, host.poweroff, host.delete; for bare-metal nodes also
// host.installed and host.power-on/off/cycle/status.
const hostJobPrefix = "host."

// hostJobArgs are a provider job's: the host's spec (its enrollment token
// among them, for this one provisioning).
type hostJobArgs struct {
	Spec provider.Spec `json:"spec"`
}

// hostJobOut is what a provider job returns: the host as the provider sees
// it, and which of the provider's errors it ended with (callers ask).
type hostJobOut struct {
	Instance   provider.Instance `json:"instance"`
	NoInstance bool              `json:"noInstance,omitempty"`
	Running    bool              `json:"running,omitempty"`
}

// sitedProvider is the provider of a site's host as the controller sees
// it: what acts on the host is a job for the site's conductors; what reads
// the provider's records (List, Locate, the console log) is the
// provider's own, on this machine.
type sitedProvider struct {
	provider.Provider
	s    *session
	site string
}

// The capabilities of the local provider, the one sites make hosts with.
var (
	_ provider.Power   = sitedProvider{}
	_ provider.Deleter = sitedProvider{}
	_ provider.Console = sitedProvider{}
	_ provider.Locator = sitedProvider{}
)

// sitedProv returns p as the controller sees it for host name: through
// its site's conductors when the site has a network of its own that p
// makes hosts on; else p.
func (s *session) sitedProv(name string, p provider.Provider) provider.Provider {
	if s.conducting != "" {
		return p // a conductor makes its site's hosts
	}
	var site string
	switch b := p.(type) {
	case interface{ HostLinks() []string }: // local hosts: on their site's network
		site = s.siteOfHost(name)
	case interface{ SiteOf(string) string }: // bare-metal nodes: on a network of a site
		site = b.SiteOf(name)
		if _, ok := s.siteGateway(site); ok {
			return sitedMetal{sitedProvider{Provider: p, s: s, site: site}}
		}
	}
	if _, ok := s.siteGateway(site); !ok {
		return p
	}
	return sitedProvider{Provider: p, s: s, site: site}
}

// sitedMetal is a bare-metal node of a site as the controller sees it:
// its deploy, power and netboot are jobs for its site's conductors (its
// BMC and network are the site's); its stages are read from the files
// the site's part of the provider keeps on this machine.
type sitedMetal struct{ sitedProvider }

// The capabilities of the bare-metal provider.
var (
	_ provider.Netboot = sitedMetal{}
	_ provider.Switch  = sitedMetal{}
	_ provider.Stages  = sitedMetal{}
)

func (p sitedMetal) Installed(ctx context.Context, name string) error {
	return p.do(ctx, "installed", name)
}
func (p sitedMetal) PowerOn(ctx context.Context, name string) error {
	return p.do(ctx, "power-on", name)
}
func (p sitedMetal) PowerOff(ctx context.Context, name string) error {
	return p.do(ctx, "power-off", name)
}
func (p sitedMetal) PowerCycle(ctx context.Context, name string) error {
	return p.do(ctx, "power-cycle", name)
}

// do has op done on host name by a conductor of its site.
func (p sitedProvider) do(ctx context.Context, op, name string) error {
	_, err := p.call(ctx, op, provider.Spec{Name: name})
	return err
}

func (p sitedMetal) PowerStatus(ctx context.Context, name string) (string, error) {
	in, err := p.call(ctx, "power-status", provider.Spec{Name: name})
	if in.State == provider.Running {
		return "on", err
	}
	return "off", err
}

func (p sitedMetal) Stage(ctx context.Context, name string, since time.Time) (string, time.Time, string, time.Time) {
	return p.Provider.(provider.Stages).Stage(ctx, name, since)
}

func (p sitedMetal) Retries() int { return p.Provider.(provider.Stages).Retries() }

func (p sitedProvider) Build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "build", spec)
}

func (p sitedProvider) Start(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "boot", spec)
}

func (p sitedProvider) Stop(ctx context.Context, name string) error {
	return p.do(ctx, "poweroff", name)
}

func (p sitedProvider) Delete(ctx context.Context, name string) error {
	return p.do(ctx, "delete", name)
}

func (p sitedProvider) ConsoleLog(name string) string {
	if c, ok := p.Provider.(provider.Console); ok {
		return c.ConsoleLog(name)
	}
	return ""
}

func (p sitedProvider) Locate(name string) (provider.Location, error) {
	if l, ok := p.Provider.(provider.Locator); ok {
		return l.Locate(name)
	}
	return provider.Location{}, fmt.Errorf("host %s: the provider does not say where it is", name)
}

// call has op done on spec's host by a conductor of its site and returns
// what it made of the host.
func (p sitedProvider) call(ctx context.Context, op string, spec provider.Spec) (provider.Instance, error) {
	s := p.s
	args, _ := json.Marshal(hostJobArgs{Spec: spec})
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + spec.Name
	timeout := s.env.Timeouts.Boot.D()
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	j := conductor.Job{ID: run + "." + spec.Name, Run: run, Env: s.env.Name, Site: p.site, Kind: hostJobPrefix + op,
		Host: conductor.HostRef{Name: spec.Name}, Args: args, Timeout: timeout, Idempotent: true}
	var out hostJobOut
	o := opOptions{job: &j, conducted: func(_ context.Context, _ inventory.Host, cr conductor.Result, _ *remote.Result) {
		if len(cr.Data) > 0 {
			json.Unmarshal(cr.Data, &out)
		}
	}}
	res := s.dispatch(ctx, remote.Options{Timeout: timeout}, o, run, []conductor.Job{j}, map[string]inventory.Host{spec.Name: {Env: s.env.Name, Name: spec.Name}})
	if len(res) != 1 {
		return provider.Instance{}, fmt.Errorf("host %s: %s through site %s's conductors: no result", spec.Name, op, p.site)
	}
	r := res[0]
	var err error
	switch {
	case out.NoInstance:
		err = fmt.Errorf("host %s: %w", spec.Name, provider.ErrNoInstance)
	case out.Running:
		err = fmt.Errorf("host %s: %w", spec.Name, provider.ErrRunning)
	case r.Err != nil:
		err = r.Err
	case r.Status != remote.OK:
		err = fmt.Errorf("host %s: %s through site %s's conductors: %s", spec.Name, op, p.site, r.Status)
	}
	return out.Instance, err
}

// doHostJob does a provider job (op) on this conductor's site, with its
// own provider.
func (s *session) doHostJob(ctx context.Context, op string, j conductor.Job) conductor.Result {
	var a hostJobArgs
	if err := json.Unmarshal(j.Args, &a); err != nil || a.Spec.Name != j.Host.Name {
		return conductor.Result{Status: string(remote.Failed), Error: fmt.Sprintf("host %s: a %s job whose spec is not the host's (%v)", j.Host.Name, j.Kind, err)}
	}
	p := s.provOf(a.Spec.Name)
	var out hostJobOut
	var err error
	note := ""
	switch op {
	case "build":
		out.Instance, err = p.Build(ctx, a.Spec)
		note = "built at " + out.Instance.Addr
	case "boot":
		out.Instance, err = p.Start(ctx, a.Spec)
		note = "booted at " + out.Instance.Addr
	case "poweroff":
		pw, ok := p.(provider.Power)
		if !ok {
			err = errors.New("its provider cannot power it off")
		} else {
			err = pw.Stop(ctx, a.Spec.Name)
		}
		note = "powered off"
	case "delete":
		d, ok := p.(provider.Deleter)
		if !ok {
			err = errors.New("its provider cannot delete it")
		} else {
			err = d.Delete(ctx, a.Spec.Name)
		}
		note = "deleted"
	case "installed":
		if nb, ok := p.(provider.Netboot); !ok {
			err = errors.New("its provider does not netboot it")
		} else {
			err = nb.Installed(ctx, a.Spec.Name)
		}
		note = "netboot off: boots its disk"
	case "power-on", "power-off", "power-cycle", "power-status":
		sw, ok := p.(provider.Switch)
		if !ok {
			err = errors.New("its provider has no BMC")
			break
		}
		switch op {
		case "power-on":
			err = sw.PowerOn(ctx, a.Spec.Name)
		case "power-off":
			err = sw.PowerOff(ctx, a.Spec.Name)
		case "power-cycle":
			err = sw.PowerCycle(ctx, a.Spec.Name)
		}
		var st string
		if err == nil {
			st, err = sw.PowerStatus(ctx, a.Spec.Name)
		}
		out.Instance = provider.Instance{Name: a.Spec.Name, State: provider.Off}
		if st == "on" {
			out.Instance.State = provider.Running
		}
		note = "power " + st
	default:
		err = fmt.Errorf("job kind %q is not one this conductor does", j.Kind)
	}
	out.NoInstance, out.Running = errors.Is(err, provider.ErrNoInstance), errors.Is(err, provider.ErrRunning)
	data, _ := json.Marshal(out)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "host "+j.Host.Name+":") {
			msg = "host " + j.Host.Name + ": " + msg
		}
		return conductor.Result{Status: string(remote.Failed), Error: msg, Data: data}
	}
	return conductor.Result{Status: string(remote.OK), Note: note, Data: data}
}

// provisionAll provisions names, up to BOOTED_PARALLEL at once (each a
// round trip to a conductor, which does its own share at once too), and
// returns every host's failure.
func (s *session) provisionAll(ctx context.Context, names []string) error {
	errs := make([]error, len(names))
	fanout.Each(ctx, len(names), s.r.Parallel, func(ctx context.Context, i int) { errs[i] = s.provision(ctx, names[i]) },
		func(i int) { errs[i] = fmt.Errorf("host %s: not provisioned: %w", names[i], ctx.Err()) })
	return errors.Join(errs...)
}
