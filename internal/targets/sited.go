package targets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"booted/internal/conductor"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/remote"
)

// A site with a network of its own (sites.X.subnet) makes its hosts
// itself: the controller asks the site's conductors, which run in the
// site's network (its namespace, on this machine) and build, boot, power
// off and delete the host with their own provider: the same functions the
// controller uses for the hosts of no site. The host's callback comes to
// the controller's nginx as any host's does; the inventory is written here.

// hostJobPrefix starts the kinds of the provider's jobs: host.build,
// host.boot, host.poweroff, host.delete.
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
	if _, ok := p.(interface{ HostLinks() []string }); !ok {
		return p
	}
	site := s.siteOfHost(name)
	if _, ok := s.siteGateway(site); !ok {
		return p
	}
	return sitedProvider{Provider: p, s: s, site: site}
}

func (p sitedProvider) Build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "build", spec)
}

func (p sitedProvider) Start(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "boot", spec)
}

func (p sitedProvider) Stop(ctx context.Context, name string) error {
	_, err := p.call(ctx, "poweroff", provider.Spec{Name: name})
	return err
}

func (p sitedProvider) Delete(ctx context.Context, name string) error {
	_, err := p.call(ctx, "delete", provider.Spec{Name: name})
	return err
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
	par := s.r.Parallel
	if par <= 0 {
		par = 10
	}
	sem := make(chan struct{}, par)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.provision(ctx, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
