package targets

import (
	"booted/internal/outcome"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"booted/internal/conductor"
	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/remote"
	"booted/internal/report"
)

// selectHosts returns the hosts of the environment that can be worked on
// (recorded, not terminated, with an address), of role if given, for
// which only (if given) is true.
func (s *session) selectHosts(ctx context.Context, role string, only func(inventory.Host) bool) ([]inventory.Host, error) {
	hosts, err := s.store.Hosts(ctx, s.env.Name)
	if err != nil {
		return nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if h.Damaged != "" {
			if !s.warned[h.Name] {
				fmt.Fprintf(s.r.Err, "host %s: skipped: its inventory row is damaged (%s); hosts:clear %s forgets it\n", h.Name, h.Damaged, s.env.Name)
				s.warned[h.Name] = true
			}
			continue
		}
		if h.State == inventory.Terminated || h.Addr == "" || (role != "" && h.Role != role) {
			continue
		}
		if only == nil || only(h) {
			out = append(out, h)
		}
	}
	return out, nil
}

// limited keeps the hosts BOOTED_LIMIT names (by host or role name, globs
// allowed); a limit that keeps none of them is an error naming it.
func (s *session) limited(hosts []inventory.Host) ([]inventory.Host, error) {
	if len(s.r.Limit) == 0 {
		return hosts, nil
	}
	var out []inventory.Host
	for _, h := range hosts {
		if s.inLimit(h.Name, h.Role) {
			out = append(out, h)
		}
	}
	if len(out) == 0 && len(hosts) > 0 {
		return nil, fmt.Errorf("BOOTED_LIMIT=%s matches none of these hosts of %s: %s", strings.Join(s.r.Limit, ","), s.env.Name, strings.Join(hostNames(hosts), ", "))
	}
	return out, nil
}

// inLimit says whether BOOTED_LIMIT (if set) takes host name of role.
func (s *session) inLimit(name, role string) bool {
	if len(s.r.Limit) == 0 {
		return true
	}
	for _, p := range s.r.Limit {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
		if ok, _ := path.Match(p, role); ok && role != "" {
			return true
		}
	}
	return false
}

// splitSel splits "ENV/ROLE".
var splitSel = config.SplitSelector

type opOptions struct {
	// keepList: the caller filters for BOOTED_RETRY and saves the failed
	// hosts itself (an operation made of several ops).
	keepList bool
	// live shows the progress display; off when the hosts' output is the display.
	live bool
	// output gives each host's stdout and stderr.
	output func(host string) (io.Writer, io.Writer)
	// onDone is told of each host as it finishes.
	onDone func(r remote.Result)
	// job, when set, is step as a job for conductors: the hosts of a
	// site (the env file's sites) get it through their conductors.
	job *conductor.Job
	// perHost, if set, gives each host's job its own Args (a load
	// balancer's configuration).
	perHost func(h inventory.Host) json.RawMessage
	// beforeJobs, if set, runs once before jobs are published (a
	// deploy's release put in the object store).
	beforeJobs func(ctx context.Context, js jetstream.JetStream) error
	// conducted, if set, is told of each conducted host's result before
	// it is shown (what the controller records from it), and may change it.
	conducted func(ctx context.Context, h inventory.Host, cr conductor.Result, r *remote.Result)
}

// each runs step on hosts: those of a site through its conductors when
// o has a job (and the env file sites), the others here.
func (s *session) each(ctx context.Context, hosts []inventory.Host, opt remote.Options, o opOptions, step func(ctx context.Context, c hostConn) error) []remote.Result {
	if o.job != nil && len(s.env.Sites) > 0 {
		return s.conducted(ctx, hosts, opt, o, step)
	}
	return s.io.Each(ctx, hosts, opt, step)
}

// op runs step on hosts with bounded parallelism (BOOTED_PARALLEL) and a
// per-host timeout, shows progress and a recap, keeps the list of hosts
// that did not succeed (for BOOTED_RETRY=failed) and returns an error
// naming them.
func (s *session) op(ctx context.Context, title string, hosts []inventory.Host, o opOptions, step func(ctx context.Context, c hostConn) error) ([]remote.Result, error) {
	if !o.keepList {
		var err error
		if hosts, err = s.retryFilter(ctx, title, hosts); err != nil || len(hosts) == 0 {
			return nil, err
		}
	}
	opt := remote.Options{Parallel: s.r.Parallel, Timeout: s.env.Timeouts.Command.D(), Output: o.output}
	var prog *report.Progress
	if o.live {
		prog = report.NewProgress(s.r.Out, title, len(hosts), s.r.JSON)
		opt.OnStart, opt.OnDone = prog.Start, prog.Done
	}
	if o.onDone != nil {
		opt.OnDone = o.onDone
	}
	results := s.each(ctx, hosts, opt, o, step)
	if prog != nil {
		prog.Close()
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].Host < results[j].Host })
	bad := report.Recap(s.r.Out, title, results, s.r.JSON)
	if !o.keepList {
		if err := s.saveFailed(ctx, title, bad); err != nil {
			return results, err
		}
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("%s: %w", title, err)
	}
	if len(bad) > 0 {
		he := &outcome.HostsError{Title: title, Total: len(results), Hosts: bad}
		for _, r := range results {
			if r.Status == remote.Failed {
				he.Failed = true
			}
		}
		return results, he
	}
	return results, nil
}

// retryFilter keeps, with BOOTED_RETRY=failed, only the hosts title failed
// on last time.
func (s *session) retryFilter(ctx context.Context, title string, hosts []inventory.Host) ([]inventory.Host, error) {
	if !s.r.RetryFailed {
		return hosts, nil
	}
	prev, err := s.store.Failed(ctx, s.env.Name, title)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range prev {
		want[n] = true
	}
	var keep []inventory.Host
	for _, h := range hosts {
		if want[h.Name] {
			keep = append(keep, h)
		}
	}
	if len(keep) == 0 {
		fmt.Fprintf(s.r.Out, "%s: no failed hosts to retry\n", title)
	}
	return keep, nil
}

// saveFailed keeps the hosts title did not succeed on, for BOOTED_RETRY=failed.
func (s *session) saveFailed(ctx context.Context, title string, bad []string) error {
	return s.store.SetFailed(ctx, s.env.Name, title, bad)
}

// advance moves a host to a state by the lifecycle's path (see
// inventory.Tx.Advance).
func (s *session) advance(ctx context.Context, name string, to inventory.State, reason string) error {
	return s.store.Advance(ctx, s.env.Name, name, to, reason)
}
