// Package hostops is one operation over many hosts of an environment, as
// every target runs it: which hosts (Select: recorded, not terminated,
// with an address; BOOTED_LIMIT; BOOTED_RETRY=failed), then each host's
// step (at most BOOTED_PARALLEL at once), live progress, a recap, the
// list of hosts that did not succeed kept for the next retry, and an
// error naming them.
package hostops

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"booted/internal/config"
	"booted/internal/inventory"
	"booted/internal/outcome"
	"booted/internal/remote"
	"booted/internal/report"
)

// Runner runs operations on one environment's hosts.
type Runner struct {
	Env   *config.Env
	Store *inventory.Store
	// Parallel bounds the hosts worked on at once; Timeout each host's
	// step (0: the env file's command timeout).
	Parallel int
	// Limit are BOOTED_LIMIT's patterns (host or role names, globs).
	Limit []string
	// RetryFailed is BOOTED_RETRY=failed: only the hosts an operation
	// did not succeed on last time.
	RetryFailed bool
	JSON        bool
	Out, Err    io.Writer
	warned      map[string]bool
}

// Select returns the hosts that can be worked on (recorded, not
// terminated, with an address), of role if given, for which only (if
// given) is true. A host whose inventory row is damaged is skipped, said
// once on Err.
func (r *Runner) Select(ctx context.Context, role string, only func(inventory.Host) bool) ([]inventory.Host, error) {
	hosts, err := r.Store.Hosts(ctx, r.Env.Name)
	if err != nil {
		return nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if h.Damaged != "" {
			if r.warned == nil {
				r.warned = map[string]bool{}
			}
			if !r.warned[h.Name] {
				fmt.Fprintf(r.Err, "host %s: skipped: its inventory row is damaged (%s); hosts:clear %s forgets it\n", h.Name, h.Damaged, r.Env.Name)
				r.warned[h.Name] = true
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

// Limited keeps the hosts Limit names (by host or role name, globs
// allowed); a limit that keeps none of them is an error naming it.
func (r *Runner) Limited(hosts []inventory.Host) ([]inventory.Host, error) {
	if len(r.Limit) == 0 {
		return hosts, nil
	}
	var out []inventory.Host
	for _, h := range hosts {
		if r.InLimit(h.Name, h.Role) {
			out = append(out, h)
		}
	}
	if len(out) == 0 && len(hosts) > 0 {
		names := make([]string, len(hosts))
		for i, h := range hosts {
			names[i] = h.Name
		}
		return nil, fmt.Errorf("BOOTED_LIMIT=%s matches none of these hosts of %s: %s", strings.Join(r.Limit, ","), r.Env.Name, strings.Join(names, ", "))
	}
	return out, nil
}

// InLimit says whether Limit (if set) takes host name of role.
func (r *Runner) InLimit(name, role string) bool {
	if len(r.Limit) == 0 {
		return true
	}
	for _, p := range r.Limit {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
		if ok, _ := path.Match(p, role); ok && role != "" {
			return true
		}
	}
	return false
}

// RetryFilter keeps, with RetryFailed, only the hosts title failed on
// last time.
func (r *Runner) RetryFilter(ctx context.Context, title string, hosts []inventory.Host) ([]inventory.Host, error) {
	if !r.RetryFailed {
		return hosts, nil
	}
	prev, err := r.Store.Failed(ctx, r.Env.Name, title)
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
		fmt.Fprintf(r.Out, "%s: no failed hosts to retry\n", title)
	}
	return keep, nil
}

// SaveFailed keeps the hosts title did not succeed on, for RetryFailed.
func (r *Runner) SaveFailed(ctx context.Context, title string, bad []string) error {
	return r.Store.SetFailed(ctx, r.Env.Name, title, bad)
}

// Show is how an operation is shown and remembered.
type Show struct {
	// KeepList: the caller filters for RetryFailed and saves the failed
	// hosts itself (an operation made of several).
	KeepList bool
	// Live shows the progress display; off when the hosts' output is the
	// display.
	Live bool
	// Output gives each host's stdout and stderr.
	Output func(host string) (io.Writer, io.Writer)
	// OnDone is told of each host as it finishes (instead of the display).
	OnDone func(r remote.Result)
}

// Each works on hosts with opt's bounds and says how each ended, one
// result per host (here, or through the hosts' sites' conductors).
type Each func(ctx context.Context, hosts []inventory.Host, opt remote.Options) []remote.Result

// Run is operation title on hosts: at most Parallel at once, each within
// the env file's command timeout, progress and a recap shown, the hosts
// that did not succeed kept (for RetryFailed) and named in the error: an
// *outcome.HostsError, Failed when one failed rather than was
// unreachable.
func (r *Runner) Run(ctx context.Context, title string, hosts []inventory.Host, show Show, each Each) ([]remote.Result, error) {
	if !show.KeepList {
		var err error
		if hosts, err = r.RetryFilter(ctx, title, hosts); err != nil || len(hosts) == 0 {
			return nil, err
		}
	}
	opt := remote.Options{Parallel: r.Parallel, Timeout: r.Env.Timeouts.Command.D(), Output: show.Output}
	var prog *report.Progress
	if show.Live {
		prog = report.NewProgress(r.Out, title, len(hosts), r.JSON)
		opt.OnStart, opt.OnDone = prog.Start, prog.Done
	}
	if show.OnDone != nil {
		opt.OnDone = show.OnDone
	}
	results := each(ctx, hosts, opt)
	if prog != nil {
		prog.Close()
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].Host < results[j].Host })
	bad := report.Recap(r.Out, title, results, r.JSON)
	if !show.KeepList {
		if err := r.SaveFailed(ctx, title, bad); err != nil {
			return results, err
		}
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("%s: %w", title, err)
	}
	if len(bad) > 0 {
		he := &outcome.HostsError{Title: title, Total: len(results), Hosts: bad}
		for _, res := range results {
			if res.Status == remote.Failed {
				he.Failed = true
			}
		}
		return results, he
	}
	return results, nil
}
