// Package jobs is the model of a per-host step cut where the host's work
// ends: its host half runs on the host (on the controller, or on a
// conductor of the host's site), its record half on the controller, with
// what the host half returned (the inventory is written only there).
//
// Each kind of job is one registered value (Define, or DefineDirect for a
// job that needs no connection to its host), used by both sides: the
// controller sends it (Kind.Halves) and a conductor does it (Lookup or
// LookupDirect, by the job's kind name). The packages that own a step define its kind
// next to it (deploy's in package deploy); jobs knows none of them.
package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/fleet"
	"booted/internal/hostops"
	"booted/internal/inventory"
	"booted/internal/provider"
	"booted/internal/remote"
	"booted/internal/service"
)

// Host is a job's work on its host; what it returns goes back to the
// controller in the job's result (as JSON).
type Host[T any] func(ctx context.Context, c fleet.Conn) (T, error)

// Record records on the controller what a host half returned (out, and
// its error): it returns the host's note in the recap, and an error when
// the host failed or what it did cannot be recorded.
type Record[T any] func(ctx context.Context, h inventory.Host, out T, err error) (note string, rerr error)

// Step is an operation's work on one host here: a host half, then its
// record half.
type Step func(ctx context.Context, c fleet.Conn) error

// Op is how an operation's hosts are worked on: shown as hostops.Show
// says and, when it has a Job, those of a site through their site's
// conductors (package sitedio).
type Op struct {
	// KeepList: the caller filters for BOOTED_RETRY and saves the failed
	// hosts itself (an operation made of several).
	KeepList bool
	// Live shows the progress display; off when the hosts' output is the
	// display.
	Live bool
	// Output gives each host's stdout and stderr.
	Output func(host string) (io.Writer, io.Writer)
	// OnDone is told of each host as it finishes.
	OnDone func(r remote.Result)
	// Job, when set, is the step as a job for conductors.
	Job *conductor.Job
	// PerHost, if set, gives each host's job its own Args (a load
	// balancer's configuration).
	PerHost func(h inventory.Host) json.RawMessage
	// BeforeJobs, if set, runs once before jobs are published (a deploy's
	// release put in the object store).
	BeforeJobs func(ctx context.Context, js jetstream.JetStream) error
	// Conducted, if set, is told of each conducted host's result before it
	// is shown (what the controller records from it), and may change it.
	Conducted func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result)
}

// Show is how o's operation is shown (hostops).
func (o Op) Show() hostops.Show {
	return hostops.Show{KeepList: o.KeepList, Live: o.Live, Output: o.Output, OnDone: o.OnDone}
}

// Worker is what a job's host half may use where it is made: the
// services' definitions, the directory artifacts are kept in, and a
// service's HTTP side on the host.
type Worker interface {
	LoadService(name string) (*service.Def, error)
	Artifacts() string
	// WaitHealthy waits for def's health check on h to pass.
	WaitHealthy(ctx context.Context, def *service.Def, h inventory.Host) error
	// Checks runs def's checks (service.yaml) against h.
	Checks(ctx context.Context, def *service.Def, h inventory.Host) []service.CheckResult
	// Get fetches path from def on h.
	Get(ctx context.Context, def *service.Def, h inventory.Host, path string) (string, error)
	// Alive checks hosts from here (ping, a login against the pinned
	// key): nil for a host that is up.
	Alive(ctx context.Context, hosts []inventory.Host, parallel int) []error
	// Provider is the provider of host name where the job runs.
	Provider(name string) provider.Provider
}

// Maker makes a job's host half from the job (its arguments), on a
// conductor.
type Maker func(w Worker, ctx context.Context, js jetstream.JetStream, j conductor.Job) (Host[any], error)

// Direct does a whole job that needs no connection to its host made
// here (an alive check, an act of the host's provider) and says how it
// ended.
type Direct func(ctx context.Context, w Worker, j conductor.Job) conductor.Result

// kind is a registered kind: a host half's maker, or a direct job.
type kind struct {
	make   Maker
	direct Direct
}

var (
	mu    sync.RWMutex
	kinds = map[string]kind{}
)

// Lookup is the maker of the job kind called name.
func Lookup(name string) (Maker, bool) {
	mu.RLock()
	defer mu.RUnlock()
	k, ok := kinds[name]
	return k.make, ok && k.make != nil
}

// LookupDirect is the direct job kind called name.
func LookupDirect(name string) (Direct, bool) {
	mu.RLock()
	defer mu.RUnlock()
	k, ok := kinds[name]
	return k.direct, ok && k.direct != nil
}

// DefineDirect registers direct job kind name (a name defined twice, of
// either shape, panics).
func DefineDirect(name string, do Direct) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := kinds[name]; dup {
		panic("job kind " + name + " defined twice")
	}
	kinds[name] = kind{direct: do}
}

// Names are the kinds defined, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Kind is a kind of job, one value for both sides: the controller sends
// it (Halves) with arguments A, and a conductor does it (Lookup, by its
// name) with the host half made from them, whose outcome T comes back.
// Idempotent: a conductor that died in the middle may have it done again.
type Kind[A, T any] struct {
	name       string
	idempotent bool
}

// Name is the kind's name, as jobs carry it.
func (k Kind[A, T]) Name() string { return k.name }

// Define registers a job kind whose host half is made by mk from the job
// and its arguments (A), and returns it. A name defined twice panics (at
// start-up: two packages claim one kind).
func Define[A, T any](name string, idempotent bool, mk func(w Worker, ctx context.Context, js jetstream.JetStream, j conductor.Job, a A) (Host[T], error)) Kind[A, T] {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := kinds[name]; dup {
		panic("job kind " + name + " defined twice")
	}
	kinds[name] = kind{make: func(w Worker, ctx context.Context, js jetstream.JetStream, j conductor.Job) (Host[any], error) {
		var a A
		if len(j.Args) > 0 {
			if err := json.Unmarshal(j.Args, &a); err != nil {
				return nil, fmt.Errorf("%s job: %w", name, err)
			}
		}
		f, err := mk(w, ctx, js, j, a)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, c fleet.Conn) (any, error) { return f(ctx, c) }, nil
	}}
	return Kind[A, T]{name: name, idempotent: idempotent}
}

// Job is a job of kind k with no arguments (hosts:run sets its Cmd).
func (k Kind[A, T]) Job() *conductor.Job {
	return &conductor.Job{Kind: k.name, Idempotent: k.idempotent}
}

// Halves sets o's job (k with args) and returns the operation's step
// here: the host half, then the record half. A site's host does the host
// half through its conductor, and its result is recorded as it comes
// (o.Conducted).
func (k Kind[A, T]) Halves(o Op, args A, host Host[T], record Record[T]) (Op, Step) {
	a, _ := json.Marshal(args)
	o.Job = &conductor.Job{Kind: k.name, Args: a, Idempotent: k.idempotent}
	o.Conducted = func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result) {
		var out T
		if len(cr.Data) > 0 {
			json.Unmarshal(cr.Data, &out)
		}
		herr := r.Err
		if herr == nil && r.Status != remote.OK {
			herr = fmt.Errorf("host %s: %s", h.Name, r.Status)
		}
		note, err := record(ctx, h, out, herr)
		if r.Status != remote.OK {
			return
		}
		if err != nil {
			r.Status, r.Err, r.Error, r.Note = remote.Failed, err, err.Error(), ""
			return
		}
		if note != "" {
			r.Note = note + " (conductor " + cr.Conductor + ")"
		}
	}
	return o, func(ctx context.Context, c fleet.Conn) error {
		out, err := host(ctx, c)
		note, err := record(ctx, c.Host(), out, err)
		if err == nil && note != "" {
			c.Note(note)
		}
		return err
	}
}

// SHA256Hex is a SHA-256 as jobs carry it: 64 lower-case hex digits.
var SHA256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
