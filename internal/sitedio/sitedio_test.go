package sitedio_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/fleet"
	"booted/internal/inventory"
	"booted/internal/jobs"
	"booted/internal/remote"
	"booted/internal/sitedio"
)

// here records the hosts worked on in this process.
type here struct {
	mu    sync.Mutex
	hosts []string
}

func (x *here) Each(_ context.Context, hosts []inventory.Host, _ remote.Options, _ func(context.Context, fleet.Conn) error) []remote.Result {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []remote.Result
	for _, h := range hosts {
		x.hosts = append(x.hosts, h.Name)
		out = append(out, remote.Result{Host: h.Name, Status: remote.OK})
	}
	return out
}

func env() *config.Env {
	return &config.Env{Name: "e", Sites: map[string]*config.Site{
		"east": {Roles: []string{"edge"}},
		"west": {Hosts: []string{"w*"}},
	}}
}

var hosts = []inventory.Host{{Name: "a1", Role: "workers"}, {Name: "e1", Role: "edge"}, {Name: "w1", Role: "workers"}}

func TestBySite(t *testing.T) {
	s := &sitedio.Split{Env: env()}
	local, sited := s.BySite(hosts)
	if len(local) != 1 || local[0].Name != "a1" || len(sited) != 2 || sited[0].Name != "e1" || sited[1].Name != "w1" {
		t.Fatalf("here %v, through sites %v", local, sited)
	}
}

// Without a job, or without sites, every host is worked on here.
func TestEach_HereWithoutJobOrSites(t *testing.T) {
	x := &here{}
	s := &sitedio.Split{Env: env(), Here: x, NATS: func(context.Context) (jetstream.JetStream, error) {
		t.Fatal("NATS asked for an operation without a job")
		return nil, nil
	}}
	if res := s.Each(context.Background(), hosts, remote.Options{}, jobs.Op{}, nil); len(res) != 3 || strings.Join(x.hosts, ",") != "a1,e1,w1" {
		t.Fatalf("results %v, here %v", res, x.hosts)
	}
	x.hosts = nil
	s.Env = &config.Env{Name: "e"}
	if res := s.Each(context.Background(), hosts, remote.Options{}, jobs.Op{Job: &conductor.Job{Kind: "run"}}, nil); len(res) != 3 || len(x.hosts) != 3 {
		t.Fatalf("no sites: results %v, here %v", res, x.hosts)
	}
}

// With a job, a site's hosts go to NATS: when it cannot be reached, each
// of them fails naming the host and why; the others are still done here,
// each host told once to OnDone.
func TestEach_SitesWhenNATSFails(t *testing.T) {
	x := &here{}
	s := &sitedio.Split{Env: env(), Here: x, NATS: func(context.Context) (jetstream.JetStream, error) {
		return nil, errors.New("nats: no servers available for connection")
	}}
	var done []string
	opt := remote.Options{OnDone: func(r remote.Result) { done = append(done, r.Host) }}
	res := s.Each(context.Background(), hosts, opt, jobs.Op{Job: &conductor.Job{Kind: "run"}}, nil)
	by := map[string]remote.Result{}
	for _, r := range res {
		by[r.Host] = r
	}
	if len(res) != 3 || by["a1"].Status != remote.OK || strings.Join(x.hosts, ",") != "a1" {
		t.Fatalf("results %+v, here %v", res, x.hosts)
	}
	for _, n := range []string{"e1", "w1"} {
		if r := by[n]; r.Status != remote.Failed || r.Error != "host "+n+": nats: no servers available for connection" {
			t.Fatalf("%s: %+v", n, r)
		}
	}
	if strings.Join(done, ",") != "e1,w1" { // a1's OnDone is Here's to call
		t.Fatalf("OnDone told of %v", done)
	}
}

// Checked checks the hosts of no site here and keeps the order of hosts.
func TestChecked_Order(t *testing.T) {
	s := &sitedio.Split{Env: &config.Env{Name: "e"}}
	errs := s.Checked(context.Background(), hosts, remote.Options{}, jobs.Op{}, func(_ context.Context, hs []inventory.Host) []error {
		out := make([]error, len(hs))
		for i, h := range hs {
			if h.Name == "e1" {
				out[i] = errors.New("host e1: down")
			}
		}
		return out
	})
	if len(errs) != 3 || errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("errs %v", errs)
	}
}

func TestFromConducted(t *testing.T) {
	r := sitedio.FromConducted(conductor.Result{Host: "w1", Status: string(remote.OK), Conductor: "c1", Note: "ran", Stderr: "noise"})
	if r.Status != remote.OK || r.Note != "ran by conductor c1" || r.Stderr != "" || r.Err != nil {
		t.Fatalf("ok: %+v", r)
	}
	r = sitedio.FromConducted(conductor.Result{Host: "w1", Status: string(remote.Failed), Error: "host w1: exit 1", Stderr: "1\n2\n3\n4\n5\n6\n7\n"})
	if r.Status != remote.Failed || r.Err == nil || r.Error != "host w1: exit 1" || r.Stderr != "3\n4\n5\n6\n7" {
		t.Fatalf("failed: %+v", r)
	}
}
