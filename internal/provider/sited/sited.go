// Package sited is the provider of a site's hosts as the controller sees
// them. A site with a network of its own (sites.X.subnet) makes its hosts
// itself: the controller asks the site's conductors, which run in the
// site's network and build, boot, power off and delete the host with
// their own provider (the functions the controller uses for hosts of no
// site). What acts on a host is a job for the site's conductors (Wrap);
// what reads the provider's records (List, Locate, the console log, a
// bare-metal node's stages) is the provider's own, on this machine. Do is
// the conductor's side of every job of kind JobPrefix+op.
package sited

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"booted/internal/conductor"
	"booted/internal/jobs"
	"booted/internal/provider"
)

// JobPrefix starts the kinds of the provider's jobs: host.build,
// host.boot, host.poweroff, host.delete; for bare-metal nodes also
// host.installed and host.power-on/off/cycle/status.
const JobPrefix = "host."

// ops are the provider's jobs (JobPrefix+op), each a direct job kind
// (jobs.DefineDirect) a conductor does with Do.
var ops = []string{"build", "boot", "poweroff", "delete", "installed", "power-on", "power-off", "power-cycle", "power-status"}

func init() {
	for _, op := range ops {
		jobs.DefineDirect(JobPrefix+op, func(ctx context.Context, w jobs.Worker, j conductor.Job) conductor.Result {
			return Do(ctx, w.Provider, j)
		})
	}
}

// Args are a provider job's: the host's spec (its enrollment token among
// them, for this one provisioning).
type Args struct {
	Spec provider.Spec `json:"spec"`
}

// Out is what a provider job returns: the host as the provider sees it,
// and which of the provider's errors it ended with (callers ask).
type Out struct {
	Instance   provider.Instance `json:"instance"`
	NoInstance bool              `json:"noInstance,omitempty"`
	Running    bool              `json:"running,omitempty"`
}

// Caller has job j done by a conductor of site j.Site and returns what
// the conductor answered (whatever its status), or why none did (the
// error names the host).
type Caller interface {
	Call(ctx context.Context, j conductor.Job) (conductor.Result, error)
}

// DefaultTimeout bounds a job when Wrap is given none.
const DefaultTimeout = 5 * time.Minute

// Wrap returns p as the controller sees the hosts of site of environment
// env: its acts are jobs for the site's conductors, through c, each
// bounded by timeout. It has the capabilities p has that a site can
// offer: power and delete (as jobs); the console log and the location
// (read here) where p has both; a bare-metal node's power switch, netboot
// and stages where p has them (and both records, as the bare-metal
// provider does). Cloning and known keys are not offered through a site.
func Wrap(p provider.Provider, env, site string, c Caller, timeout time.Duration) provider.Provider {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	w := wrapped{Provider: p, env: env, site: site, c: c, timeout: timeout}
	_, console := p.(provider.Console)
	_, locator := p.(provider.Locator)
	if !console || !locator {
		return w
	}
	_, sw := p.(provider.Switch)
	_, nb := p.(provider.Netboot)
	_, st := p.(provider.Stages)
	if sw && nb && st {
		return metal{records{w}}
	}
	return records{w}
}

// wrapped is a site's host: its acts are jobs for the site's conductors.
type wrapped struct {
	provider.Provider
	env, site string
	c         Caller
	timeout   time.Duration
}

var (
	_ provider.Power   = wrapped{}
	_ provider.Deleter = wrapped{}
)

// records is a site's host whose provider keeps its console log and its
// location on this machine (local hosts, bare-metal nodes): read here.
type records struct{ wrapped }

var (
	_ provider.Console = records{}
	_ provider.Locator = records{}
)

// metal is a bare-metal node of a site: its deploy, power and netboot are
// jobs for its site's conductors (its BMC and network are the site's);
// its stages are read from the files the site's part of the provider
// keeps on this machine.
type metal struct{ records }

// The capabilities of the bare-metal provider.
var (
	_ provider.Netboot = metal{}
	_ provider.Switch  = metal{}
	_ provider.Stages  = metal{}
)

func (p metal) Installed(ctx context.Context, name string) error {
	return p.do(ctx, "installed", name)
}
func (p metal) PowerOn(ctx context.Context, name string) error {
	return p.do(ctx, "power-on", name)
}
func (p metal) PowerOff(ctx context.Context, name string) error {
	return p.do(ctx, "power-off", name)
}
func (p metal) PowerCycle(ctx context.Context, name string) error {
	return p.do(ctx, "power-cycle", name)
}

func (p metal) PowerStatus(ctx context.Context, name string) (string, error) {
	in, err := p.call(ctx, "power-status", provider.Spec{Name: name})
	if in.State == provider.Running {
		return "on", err
	}
	return "off", err
}

func (p metal) Stage(ctx context.Context, name string, since time.Time) (string, time.Time, string, time.Time) {
	return p.Provider.(provider.Stages).Stage(ctx, name, since)
}

func (p metal) Retries() int { return p.Provider.(provider.Stages).Retries() }

// do has op done on host name by a conductor of its site.
func (p wrapped) do(ctx context.Context, op, name string) error {
	_, err := p.call(ctx, op, provider.Spec{Name: name})
	return err
}

func (p wrapped) Build(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "build", spec)
}

func (p wrapped) Start(ctx context.Context, spec provider.Spec) (provider.Instance, error) {
	return p.call(ctx, "boot", spec)
}

func (p wrapped) Stop(ctx context.Context, name string) error {
	return p.do(ctx, "poweroff", name)
}

func (p wrapped) Delete(ctx context.Context, name string) error {
	return p.do(ctx, "delete", name)
}

func (p records) ConsoleLog(name string) string {
	return p.Provider.(provider.Console).ConsoleLog(name)
}

func (p records) Locate(name string) (provider.Location, error) {
	return p.Provider.(provider.Locator).Locate(name)
}

// call has op done on spec's host by a conductor of its site and returns
// what it made of the host.
func (p wrapped) call(ctx context.Context, op string, spec provider.Spec) (provider.Instance, error) {
	args, err := json.Marshal(Args{Spec: spec})
	if err != nil {
		return provider.Instance{}, err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + spec.Name
	j := conductor.Job{ID: run + "." + spec.Name, Run: run, Env: p.env, Site: p.site, Kind: JobPrefix + op,
		Host: conductor.HostRef{Name: spec.Name}, Args: args, Timeout: p.timeout, Idempotent: true}
	cr, err := p.c.Call(ctx, j)
	if err != nil {
		return provider.Instance{}, err
	}
	var out Out
	if len(cr.Data) > 0 {
		if err := json.Unmarshal(cr.Data, &out); err != nil {
			return provider.Instance{}, fmt.Errorf("host %s: %s through site %s's conductors: its answer is not one: %v", spec.Name, op, p.site, err)
		}
	}
	switch {
	case out.NoInstance:
		err = fmt.Errorf("host %s: %w", spec.Name, provider.ErrNoInstance)
	case out.Running:
		err = fmt.Errorf("host %s: %w", spec.Name, provider.ErrRunning)
	case cr.Error != "":
		err = errors.New(cr.Error)
	case cr.Status != "ok":
		err = fmt.Errorf("host %s: %s through site %s's conductors: %s", spec.Name, op, p.site, cr.Status)
	}
	return out.Instance, err
}

// Do does provider job j (of kind JobPrefix+op) with the conductor's own
// provider of its host, provOf's, and says how it ended.
func Do(ctx context.Context, provOf func(host string) provider.Provider, j conductor.Job) conductor.Result {
	op, ok := strings.CutPrefix(j.Kind, JobPrefix)
	if !ok {
		return conductor.Result{Status: "failed", Error: fmt.Sprintf("host %s: job kind %q is not a provider's", j.Host.Name, j.Kind)}
	}
	var a Args
	if err := json.Unmarshal(j.Args, &a); err != nil || a.Spec.Name != j.Host.Name {
		return conductor.Result{Status: "failed", Error: fmt.Sprintf("host %s: a %s job whose spec is not the host's (%v)", j.Host.Name, j.Kind, err)}
	}
	p := provOf(a.Spec.Name)
	var out Out
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
		return conductor.Result{Status: "failed", Error: msg, Data: data}
	}
	return conductor.Result{Status: "ok", Note: note, Data: data}
}

// Site returns the site whose conductors make p's hosts, when p is one
// Wrap returned.
func Site(p provider.Provider) (string, bool) {
	switch w := p.(type) {
	case wrapped:
		return w.site, true
	case records:
		return w.site, true
	case metal:
		return w.site, true
	}
	return "", false
}
